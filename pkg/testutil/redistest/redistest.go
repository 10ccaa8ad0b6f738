// Package redistest runs a real redis-server for tests: never a mock, and
// never a silent skip when the binary is missing.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/heraldhq/herald/pkg/testutil"
)

const (
	installHint  = "install redis-server (apt-get install redis-server)"
	readyTimeout = 10 * time.Second
	stopTimeout  = 10 * time.Second
	// startAttempts bounds retries when a freshly chosen port was taken by
	// someone else between our probe and redis binding it.
	startAttempts = 3
)

// Server is one redis-server process on 127.0.0.1. It keeps nothing on
// disk, so Restart brings back an empty server on the same port.
type Server struct {
	bin  string
	dir  string
	port int
	fail func(format string, args ...any)

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	out  *testutil.Buffer
}

// Start runs redis-server for the test and stops it on cleanup. A missing
// binary fails the test with an install hint.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := newServer(tb.TempDir(), tb.Fatalf)
	if err != nil {
		tb.Fatalf("redistest: %v", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// StartMain is Start for TestMain, which has no testing.TB: one server for
// the whole test package. It exits the process with a message on failure;
// call the returned function after m.Run to stop the server and remove its
// directory.
func StartMain() (*Server, func()) {
	dir, err := os.MkdirTemp("", "redistest-")
	if err != nil {
		fatalMain("redistest: %v", err)
	}
	s, err := newServer(dir, fatalMain)
	if err != nil {
		_ = os.RemoveAll(dir)
		fatalMain("redistest: %v", err)
	}
	return s, func() {
		s.Stop()
		_ = os.RemoveAll(dir)
	}
}

func fatalMain(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func newServer(dir string, fail func(string, ...any)) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server not found: %s: %w", installHint, err)
	}
	s := &Server{bin: bin, dir: dir, fail: fail}
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s.port = port
		if lastErr = s.start(); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// Addr returns host:port, as go-redis Options.Addr wants it.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// URL returns redis://127.0.0.1:N/0, as HERALD_REDIS_URL wants it.
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Stop kills the server and waits for it to exit. It is idempotent, so a
// test may Stop for an outage test and cleanup may Stop again.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		s.fail("redistest: redis-server pid %d did not exit within %s", s.cmd.Process.Pid, stopTimeout)
	}
	s.cmd = nil
}

// Restart stops the server if it runs and starts an empty one on the same
// port.
func (s *Server) Restart() {
	s.Stop()
	if err := s.start(); err != nil {
		s.fail("redistest: restart: %v", err)
	}
}

// start launches redis-server on s.port and waits until it answers PING.
func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &testutil.Buffer{}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--loglevel", "warning",
	)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	err := testutil.Poll(readyTimeout, func() error {
		select {
		case <-done:
			return errExited
		default:
		}
		return ping(net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)))
	})
	if err != nil {
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("redis-server on port %d not ready: %w; output: %s", s.port, err, out.String())
	}
	s.cmd, s.done, s.out = cmd, done, out
	return nil
}

var errExited = errors.New("redis-server exited")

// ping does one raw RESP PING so this package needs no Redis client.
func ping(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return err
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// freePort asks the kernel for a free loopback port. Another process may
// take it before redis binds it; newServer retries in that case.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
