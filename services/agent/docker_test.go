package agent

import (
	"encoding/binary"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

func dockerCmd(action, id string) agentwire.DockerCommand {
	return agentwire.DockerCommand{Type: agentwire.TypeDockerCommand, CommandID: "d1", Action: action, ContainerID: id}
}

func TestDockerUnavailableIsAClearError(t *testing.T) {
	dir := t.TempDir()
	notASocket := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(notASocket, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, socket := range []string{filepath.Join(dir, "missing.sock"), notASocket} {
		d := newDockerClient(socket, 5*time.Second)
		resp := d.handle(t.Context(), dockerCmd(agentwire.ActionStart, "web"))
		if resp.Success || !strings.HasPrefix(resp.Message, "Docker not available: ") ||
			resp.CommandID != "d1" || resp.Type != agentwire.TypeDockerResponse {
			t.Fatalf("socket %s: %+v", socket, resp)
		}
	}
}

func TestDockerRejectsBadInput(t *testing.T) {
	d := newDockerClient(filepath.Join(t.TempDir(), "missing.sock"), time.Second)
	if resp := d.handle(t.Context(), dockerCmd(agentwire.ActionStart, "../../etc")); resp.Success || resp.Message != "Invalid container_id" {
		t.Fatalf("path-like id: %+v", resp)
	}
	if resp := d.handle(t.Context(), dockerCmd("rm", "web")); resp.Success || !strings.Contains(resp.Message, "Unknown docker action") {
		t.Fatalf("unknown action: %+v", resp)
	}
}

// TestDockerEngineAPI runs the client against an HTTP server on a Unix
// socket that answers the way the Docker Engine API documents.
func TestDockerEngineAPI(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "d.sock")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	mux := http.NewServeMux()
	mux.HandleFunc("POST /containers/web/start", func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.String())
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /containers/web/stop", func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.String())
		w.WriteHeader(http.StatusNotModified)
	})
	mux.HandleFunc("POST /containers/gone/restart", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"message":"No such container: gone"}`))
	})
	mux.HandleFunc("GET /containers/web/logs", func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.String())
		w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
		frame := func(stream byte, s string) []byte {
			h := []byte{stream, 0, 0, 0, 0, 0, 0, 0}
			binary.BigEndian.PutUint32(h[4:], uint32(len(s)))
			return append(h, s...)
		}
		w.Write(frame(1, "out one\nout "))
		w.Write(frame(2, "two\nerr three\n"))
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	d := newDockerClient(socket, 5*time.Second)
	if resp := d.handle(t.Context(), dockerCmd(agentwire.ActionStart, "web")); !resp.Success || resp.Message != "Container started" {
		t.Fatalf("start: %+v", resp)
	}
	if resp := d.handle(t.Context(), dockerCmd(agentwire.ActionStop, "web")); !resp.Success || resp.Message != "Container already stopped" {
		t.Fatalf("stop of a stopped container: %+v", resp)
	}
	if resp := d.handle(t.Context(), dockerCmd(agentwire.ActionRestart, "gone")); resp.Success ||
		resp.Message != "Failed to restart container: No such container: gone" {
		t.Fatalf("restart of a missing container: %+v", resp)
	}
	cmd := dockerCmd(agentwire.ActionLogs, "web")
	cmd.Tail = 5
	resp := d.handle(t.Context(), cmd)
	if !resp.Success || !slices.Equal(resp.Logs, []string{"out one", "out two", "err three"}) {
		t.Fatalf("logs: %+v", resp)
	}
	want := []string{"/containers/web/start", "/containers/web/stop?t=10", "/containers/web/logs?stderr=1&stdout=1&tail=5"}
	if !slices.Equal(paths, want) {
		t.Fatalf("requests %q, want %q", paths, want)
	}
}

func TestDemultiplexRawStream(t *testing.T) {
	if isMultiplexed("application/vnd.docker.raw-stream", []byte{1, 0, 0, 0, 0, 0, 0, 1, 'x'}) {
		t.Fatal("raw stream taken for multiplexed")
	}
	if isMultiplexed("application/octet-stream", []byte("plain tty output\n")) {
		t.Fatal("tty text taken for multiplexed")
	}
	if got := string(demultiplex([]byte{1, 0, 0, 0, 0, 0, 0, 9, 'a', 'b'})); got != "ab" {
		t.Fatalf("truncated frame: %q", got)
	}
}
