-- Run once by the postgres image on an empty volume: one database per service.
CREATE DATABASE inventory;
CREATE DATABASE allocation;
CREATE DATABASE gateway;
