-- Run once by the postgres image on a new data directory (docker-compose.yml). Migration
-- 0001 grants phoenix_reader its read-only rights and skips creating it when it exists.
CREATE ROLE phoenix_reader NOLOGIN;
CREATE ROLE phoenix_api LOGIN PASSWORD 'phoenix_api' IN ROLE phoenix_reader;
