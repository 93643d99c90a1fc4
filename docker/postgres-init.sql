-- Run once by the postgres image, on the first start with an empty data volume (docker-entrypoint-initdb.d),
-- as POSTGRES_USER: the two databases the stack uses, owned by that user.
-- papscreen: slides, analyses, models (migrated by the `migrate` service: papscreen db upgrade).
-- prefect: the Prefect server's own state (it migrates itself on start).
CREATE DATABASE papscreen;
CREATE DATABASE prefect;
