"""The pure core: resources, commands, events and the rules. No I/O imports, ever."""
