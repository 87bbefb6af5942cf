"""The read-only HTTP lookup API (FastAPI on uvicorn), one idea per module.

Nothing is re-exported here: importing one module (say :mod:`.problems`, which the gRPC API
shares) does not load FastAPI and uvicorn. The process starts in :mod:`.server`
(``phoenix-resources api``) and the app is assembled in :mod:`.app`.
"""
