package herald_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gorilla/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	heraldv1 "github.com/heraldhq/herald/proto/herald/v1"
	"github.com/heraldhq/herald/services/herald"
)

// browser starts Debian's chromium, headless, for one test. Without chromium the test is
// skipped, unless HERALD_REQUIRE_CHROMIUM is set (CI sets it: .ci/run installs chromium).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("HERALD_REQUIRE_CHROMIUM") != "" {
			t.Fatal("chromium not found (apt-get install chromium)")
		}
		t.Skip("chromium not installed: the console's browser test needs it (apt-get install chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root, where chromium's sandbox refuses to start
		chromedp.DisableGPU, chromedp.WindowSize(1280, 900), chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelCtx := chromedp.NewContext(actx)
	// The first call starts the browser and must not carry a timeout (it would stop the
	// browser); the test's steps then run under one.
	if err := chromedp.Do(bctx); err != nil {
		cancelCtx()
		cancelAlloc()
		t.Fatalf("chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(bctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// waitJS polls a JavaScript condition in the page until it is true, within d.
func waitJS(t *testing.T, ctx context.Context, what, expr string, d time.Duration) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(d), chromedp.WithPollingInterval(50*time.Millisecond))); err != nil {
		body, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
		t.Fatalf("%s: %v\npage text:\n%s", what, err, body)
	}
}

// TestConsoleInBrowser drives the console in a real chromium against a real stack and agent:
// log in, the agent online, a chart gaining a sample, a log line, a command, events under one
// filter and not another, and a kicked connection vanishing. Screenshots of each page go to
// $HERALD_SCREENSHOTS (default: the test's temp dir, named in the log).
func TestConsoleInBrowser(t *testing.T) {
	ctx := browser(t)
	s := startAgentStack(t)
	logFile := filepath.Join(t.TempDir(), "app.log")
	if err := os.WriteFile(logFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	startAgent(t, "ws://"+s.HTTPAddr()+"/api/v1/agents/ws", s.DevAPIKey(), "-log-files", logFile)
	shots := os.Getenv("HERALD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	shot := func(name string) {
		t.Helper()
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // 100: PNG; lower is JPEG
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	base := "http://" + s.HTTPAddr() + "/console/"

	// The page's own headers: no inline script may run.
	resp, err := http.Get(base)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") {
		t.Fatalf("GET /console/: %s, CSP %q", resp.Status, csp)
	}

	// Log in; the servers page shows the agent online.
	if err := chromedp.Do(ctx, chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS("#login-pass")),
		chromedp.SendKeys(chromedp.CSS("#login-pass"), "correct horse"), chromedp.Click(chromedp.CSS("#login-submit"))); err != nil {
		t.Fatal(err)
	}
	online := fmt.Sprintf(`!!document.querySelector('tr[data-server=%q] td.state.online')`, herald.DevServerID)
	waitJS(t, ctx, "agent online on the servers page", online, 20*time.Second)
	waitJS(t, ctx, "events socket connected", `document.querySelector('.sock[data-state=connected]') !== null`, 10*time.Second)
	shot("1-servers")

	// The server's page: a chart gains a new sample, a line written to the log appears.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`tr[data-server=%q] a`, herald.DevServerID)))); err != nil {
		t.Fatal(err)
	}
	samples := `+(document.querySelector('#charts canvas') || {dataset: {samples: 0}}).dataset.samples`
	waitJS(t, ctx, "a first CPU sample", samples+` >= 1`, 15*time.Second)
	first, err := chromedp.Run(ctx, chromedp.Evaluate[int](samples))
	if err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "a new CPU sample", fmt.Sprintf(`%s > %d`, samples, first), 15*time.Second)
	waitJS(t, ctx, "logs socket connected", `document.querySelector('.sock[data-socket=logs][data-state=connected]') !== null`, 10*time.Second)
	// The agent tails from the end of the file and polls it: write until the line shows.
	line := "console test line " + time.Now().Format(time.RFC3339Nano)
	writeLog := func(text string) {
		t.Helper()
		f, err := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := fmt.Fprintln(f, text); err != nil {
			t.Fatal(err)
		}
	}
	writeLog("ERROR " + line)
	writeLog("INFO quiet " + line)
	lineShown := func(text string) string {
		return fmt.Sprintf(`[...document.querySelectorAll('#log-tail .log-line')].some((n) => !n.hidden && n.textContent.includes(%q))`, text)
	}
	waitJS(t, ctx, "the log lines in the tail", lineShown("ERROR "+line)+" && "+lineShown("quiet "+line), 15*time.Second)
	// The level filter keeps the error line and hides the info one.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`(() => { const s = document.querySelector('#log-level');
		s.value = 'error'; s.dispatchEvent(new Event('change')); return true; })()`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "level error shows errors only", lineShown("ERROR "+line)+" && !"+lineShown("quiet "+line), 5*time.Second)

	// The command box: echo hi prints hi and exit 0, through the edge's REST commands endpoint.
	if commandsEndpoint(t, s) {
		if err := chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#cmd-input"), "echo hi"), chromedp.Click(chromedp.CSS("#cmd-run"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "echo hi ran", `document.querySelector('#cmd-exit').dataset.code === '0' && document.querySelector('#cmd-output').textContent === 'hi\n'`, 20*time.Second)
	} else {
		t.Log("POST /api/v1/commands/{server_id} is not on this edge yet: the command box is not exercised")
	}
	shot("2-server")

	// Twenty charts of 120 points each, every one redrawn per round as a new sample arrives
	// (1 sample/s each is one round a second): a round must fit well inside a frame.
	perRound, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => {
		const box = document.createElement('div'); box.className = 'charts'; document.body.append(box);
		const cs = Array.from({length: 20}, (_, i) => { const c = new Chart('bench ' + i, '%'); box.append(c.node);
			for (let j = 0; j < 120; j++) c.points.push(Math.random() * 100); return c; });
		const t0 = performance.now();
		for (let r = 0; r < 50; r++) for (const c of cs) { c.points.push(Math.random() * 100); c.points.shift(); c.draw(); }
		const per = (performance.now() - t0) / 50;
		box.remove();
		return per;
	})()`))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("20 charts redrawn with a new sample each: %.2f ms per round", perRound)
	if perRound > 50 {
		t.Errorf("20 charts take %.1f ms per round: not smooth", perRound)
	}

	// Events: under profiles.save.* a profiles event shows and a machines one does not; under
	// machines.*.* the other way round.
	tok := adminToken(t, s)
	cc, err := grpc.NewClient(s.GRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	publish := func(typ, action, key string) {
		t.Helper()
		pctx := metadata.AppendToOutgoingContext(t.Context(), "authorization", "Bearer "+tok)
		if _, err := heraldv1.NewEventServiceClient(cc).Publish(pctx, &heraldv1.PublishRequest{
			Event: &heraldv1.Event{Type: typ, Action: action, Key: key}}); err != nil {
			t.Fatal(err)
		}
	}
	applyFilter := func(f string) {
		t.Helper()
		if err := chromedp.Do(ctx, chromedp.SetValue(chromedp.CSS("#event-filter"), f), chromedp.Click(chromedp.CSS("#event-apply"))); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "filter "+f+" registered", fmt.Sprintf(`document.querySelector('#event-status').textContent === %q`, "register "+f), 10*time.Second)
	}
	has := func(key string) string {
		return fmt.Sprintf(`document.querySelector('#event-list .event[data-key=%q]') !== null`, key)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"#/events"), chromedp.WaitVisible(chromedp.CSS("#event-filter"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "events socket connected", `document.querySelector('.sock[data-socket=events][data-state=connected]') !== null`, 10*time.Second)
	applyFilter("profiles.save.*")
	publish("machines", "create", "m-1")
	publish("profiles", "save", "global")
	waitJS(t, ctx, "profiles.save.global under profiles.save.*", has("profiles.save.global"), 10*time.Second)
	waitJS(t, ctx, "machines.create.m-1 absent under profiles.save.*", "!("+has("machines.create.m-1")+")", time.Second)
	shot("3-events")
	applyFilter("machines.*.*")
	publish("profiles", "save", "other")
	publish("machines", "create", "m-2")
	waitJS(t, ctx, "machines.create.m-2 under machines.*.*", has("machines.create.m-2"), 10*time.Second)
	waitJS(t, ctx, "profiles.save.other absent under machines.*.*", "!("+has("profiles.save.other")+")", time.Second)

	// Connections: a socket of the test's own is listed; kicked from the page, it is closed
	// with 4003 and leaves the table.
	victim := dialDRP(t, s.HTTPAddr(), "token="+tok)
	defer victim.Close()
	addr := victim.LocalAddr().String()
	row := fmt.Sprintf(`document.querySelector('#conn-rows tr[data-addr=%q]')`, addr)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"#/connections"), chromedp.WaitVisible(chromedp.CSS("#conn-table"))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "the test's socket listed", row+" !== null", 15*time.Second)
	shot("4-connections")
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`#conn-rows tr[data-addr=%q] button.kick`, addr)))); err != nil {
		t.Fatal(err)
	}
	_ = victim.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 0; i < 100; i++ {
		_, _, err := victim.ReadMessage()
		if ce, ok := err.(*websocket.CloseError); ok {
			if ce.Code != 4003 || !strings.Contains(ce.Text, "kicked by user:admin") {
				t.Fatalf("kicked socket closed with %d %q, want 4003 kicked by user:admin", ce.Code, ce.Text)
			}
			break
		} else if err != nil {
			t.Fatalf("kicked socket: %v", err)
		}
	}
	waitJS(t, ctx, "the kicked socket gone from the table", row+" === null", 15*time.Second)
	shot("5-connections-after-kick")
	t.Logf("screenshots in %s", shots)
}

// commandsEndpoint reports whether the edge serves POST /api/v1/commands/{server_id}.
func commandsEndpoint(t *testing.T, s *herald.Stack) bool {
	t.Helper()
	resp, err := http.Post("http://"+s.HTTPAddr()+"/api/v1/commands/"+herald.DevServerID, "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed
}
