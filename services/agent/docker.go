package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/heraldhq/herald/pkg/agentwire"
)

// Docker defaults.
const (
	DefaultDockerSocket = "/var/run/docker.sock"
	// dockerStopSeconds is how long stop and restart let a container shut
	// down before Docker kills it (chatops' default too).
	dockerStopSeconds = 10
	// dockerDefaultTail and dockerMaxTail bound the log lines returned.
	dockerDefaultTail = 100
	dockerMaxTail     = 1000
	// dockerMaxBody bounds what is read from the Docker daemon per request.
	dockerMaxBody = 1 << 20
)

// containerRef accepts Docker container ids and names, and nothing that
// could change the request path.
var containerRef = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}$`)

// dockerClient speaks the Docker Engine HTTP API over its Unix socket with
// net/http alone: four endpoints do not justify the Docker SDK's weight.
type dockerClient struct {
	socket string
	http   *http.Client
}

func newDockerClient(socket string, timeout time.Duration) *dockerClient {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
		MaxIdleConns:    1,
		IdleConnTimeout: 30 * time.Second,
	}
	return &dockerClient{socket: socket, http: &http.Client{Transport: tr, Timeout: timeout}}
}

// unavailableError marks a failure to reach the daemon at all: no socket,
// or nothing listening on it. Its text is the wire message.
type unavailableError struct{ cause error }

func (e *unavailableError) Error() string { return "Docker not available: " + e.cause.Error() }
func (e *unavailableError) Unwrap() error { return e.cause }

// do runs one API call; the host part of the URL is ignored by the dialer.
func (d *dockerClient) do(ctx context.Context, method, path string, query url.Values) (*http.Response, error) {
	if _, err := os.Stat(d.socket); err != nil {
		return nil, &unavailableError{err}
	}
	u := "http://docker" + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		var opErr *net.OpError
		if errors.As(err, &opErr) && opErr.Op == "dial" {
			return nil, &unavailableError{opErr}
		}
		return nil, err
	}
	return resp, nil
}

// apiError turns a non-success answer into its message ({"message": ...}).
func apiError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil && e.Message != "" {
		return errors.New(e.Message)
	}
	return fmt.Errorf("docker answered %s", resp.Status)
}

// handle performs one docker_command and returns the doc-shape response.
func (d *dockerClient) handle(ctx context.Context, cmd agentwire.DockerCommand) agentwire.DockerResponse {
	resp := agentwire.DockerResponse{Type: agentwire.TypeDockerResponse, CommandID: cmd.CommandID}
	if !containerRef.MatchString(cmd.ContainerID) {
		resp.Message = "Invalid container_id"
		return resp
	}
	var err error
	switch cmd.Action {
	case agentwire.ActionStart, agentwire.ActionStop, agentwire.ActionRestart:
		resp.Message, err = d.lifecycle(ctx, cmd.Action, cmd.ContainerID)
	case agentwire.ActionLogs:
		resp.Logs, err = d.logs(ctx, cmd.ContainerID, cmd.Tail)
		if err == nil {
			resp.Message = fmt.Sprintf("%d log lines", len(resp.Logs))
		}
	default:
		resp.Message = fmt.Sprintf("Unknown docker action %q (want start, stop, restart or logs)", cmd.Action)
		return resp
	}
	var unavailable *unavailableError
	switch {
	case errors.As(err, &unavailable):
		resp.Message = err.Error()
	case err != nil:
		resp.Message = fmt.Sprintf("Failed to %s container: %v", cmd.Action, err)
	default:
		resp.Success = true
	}
	return resp
}

// pastTense is the word for a finished lifecycle action.
var pastTense = map[string]string{
	agentwire.ActionStart: "started", agentwire.ActionStop: "stopped", agentwire.ActionRestart: "restarted",
}

// lifecycle starts, stops or restarts a container. Docker answers 304 when
// the container already is in the wanted state, which counts as success.
func (d *dockerClient) lifecycle(ctx context.Context, action, id string) (string, error) {
	q := url.Values{}
	if action != agentwire.ActionStart {
		q.Set("t", strconv.Itoa(dockerStopSeconds))
	}
	resp, err := d.do(ctx, http.MethodPost, "/containers/"+url.PathEscape(id)+"/"+action, q)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusNoContent:
		return "Container " + pastTense[action], nil
	case http.StatusNotModified:
		return "Container already " + pastTense[action], nil
	}
	return "", apiError(resp)
}

// logs returns the last tail lines of a container's stdout and stderr.
func (d *dockerClient) logs(ctx context.Context, id string, tail int) ([]string, error) {
	if tail <= 0 {
		tail = dockerDefaultTail
	}
	tail = min(tail, dockerMaxTail)
	q := url.Values{"stdout": {"1"}, "stderr": {"1"}, "tail": {strconv.Itoa(tail)}}
	resp, err := d.do(ctx, http.MethodGet, "/containers/"+url.PathEscape(id)+"/logs", q)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, apiError(resp)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, dockerMaxBody))
	if err != nil {
		return nil, fmt.Errorf("read logs: %w", err)
	}
	if isMultiplexed(resp.Header.Get("Content-Type"), body) {
		body = demultiplex(body)
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), dockerMaxBody)
	for sc.Scan() {
		line, _ := cutLine(sc.Text(), maxLogLine)
		lines = append(lines, line)
	}
	return lines, nil
}

// isMultiplexed reports whether a logs body uses Docker's stream framing
// (containers without a TTY). Newer daemons say so in the content type;
// older ones send application/octet-stream either way, so the first frame
// header is checked: stream 0, 1 or 2 followed by three zero bytes.
func isMultiplexed(contentType string, body []byte) bool {
	switch {
	case strings.HasPrefix(contentType, "application/vnd.docker.multiplexed-stream"):
		return true
	case strings.HasPrefix(contentType, "application/vnd.docker.raw-stream"):
		return false
	}
	return len(body) >= 8 && body[0] <= 2 && body[1] == 0 && body[2] == 0 && body[3] == 0
}

// demultiplex joins the payloads of Docker's framed stream: each frame is an
// 8-byte header (stream type, three zero bytes, big-endian payload size)
// followed by the payload. A truncated last frame keeps what arrived.
func demultiplex(b []byte) []byte {
	var out []byte
	for len(b) >= 8 {
		n := int(binary.BigEndian.Uint32(b[4:8]))
		b = b[8:]
		n = min(n, len(b))
		out = append(out, b[:n]...)
		b = b[n:]
	}
	return out
}
