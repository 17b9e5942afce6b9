// Package deploy keeps the container deployment honest: its tests read the
// Dockerfile and docker-compose.yml at the root of the module and check them
// against the programs under cmd/ (which commands exist, which environment
// variables they read), since no Docker engine runs where the tests do.
package deploy
