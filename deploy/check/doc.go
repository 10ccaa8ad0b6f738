// Package check holds the tests that keep Herald's deployment files honest where Docker and
// Kubernetes cannot run: docker-compose.yml loaded with compose-go, deploy/k8s decoded into the
// Kubernetes API types, deploy/lb/haproxy.cfg checked by HAProxy itself, and the compose
// topology started from the compose file's own environment with the real binaries as
// processes, with real requests routed through HAProxy. It has no code of its own.
package check
