// Command testapp is the only content of the images that gitopsd's tests and
// demo deploy. Images are built FROM scratch, so everything a test needs inside
// a container (serving, health probing, fetching, load generation) lives in
// this one static binary.
//
// Subcommands:
//
//	serve                        HTTP app on :$PORT (default); exits 1 at start
//	                             when the file $CRASH_IF_EXISTS exists; on
//	                             SIGTERM serves $STOP_DELAY longer, then drains
//	probe [URL]                  exit 0 if URL (default own /healthz) answers 200
//	get URL                      print the body, exit 0 on 2xx
//	load URL --duration D --out F  request URL in a loop for D (or until
//	                             SIGTERM), write JSON stats
//	job --for D --exit N         a one-shot: run for D, then exit with N
//	check FILE [CONTENT]         exit 0 if FILE exists (and holds CONTENT): a
//	                             restore test's verify command
//	write FILE CONTENT           write CONTENT to FILE: a lifecycle hook
//	env [--exit N]               print the environment, then exit with N: a
//	                             hook or probe that leaks what it was given
//	proxy HOST:PORT              forward requests on :$PORT to every address
//	                             of HOST in turn, skipping one that does not
//	                             connect within $CONNECT_TIMEOUT (500ms): the
//	                             demo's front, so its app rolls start-first
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	cmd, args := "serve", []string(nil)
	if len(os.Args) > 1 {
		cmd, args = os.Args[1], os.Args[2:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve()
	case "probe":
		url := "http://127.0.0.1:" + envOr("PORT", "8080") + "/healthz"
		if len(args) > 0 {
			url = args[0]
		}
		err = probe(url)
	case "get":
		if len(args) != 1 {
			err = errors.New("usage: testapp get URL")
			break
		}
		err = get(args[0])
	case "load":
		err = load(args)
	case "job":
		err = job(args)
	case "check":
		err = check(args)
	case "write":
		if len(args) != 2 {
			err = errors.New("usage: testapp write FILE CONTENT")
			break
		}
		err = os.WriteFile(args[0], []byte(args[1]), 0o644)
	case "env":
		err = printEnv(args)
	case "proxy":
		err = proxyMain(args)
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testapp:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func serve() error {
	version := envOr("VERSION", "dev")
	var failing atomic.Bool
	failing.Store(os.Getenv("FAIL_HEALTH") == "1")

	if poison := os.Getenv("CRASH_IF_EXISTS"); poison != "" {
		if _, err := os.Stat(poison); err == nil {
			// A crash on start, for crash-loop tests: put the file in a volume.
			return fmt.Errorf("%s exists: crashing on start (CRASH_IF_EXISTS)", poison)
		}
	}
	if wf := os.Getenv("WRITE_FILE"); wf != "" {
		// Split at the first "=" after the path, so content may contain "=".
		path, content, _ := strings.Cut(wf, "=")
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return fmt.Errorf("write WRITE_FILE %s: %w", path, err)
		}
	}

	crash := make(chan struct{}, 1)
	mux := http.NewServeMux()
	showVersion := func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, version) }
	mux.HandleFunc("GET /{$}", showVersion)
	mux.HandleFunc("GET /version", showVersion)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if failing.Load() {
			http.Error(w, "failing", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprint(w, "ok")
	})
	mux.HandleFunc("POST /fail", func(w http.ResponseWriter, _ *http.Request) {
		failing.Store(true)
		fmt.Fprintln(w, "health now failing")
	})
	mux.HandleFunc("POST /recover", func(w http.ResponseWriter, _ *http.Request) {
		failing.Store(false)
		fmt.Fprintln(w, "health now passing")
	})
	mux.HandleFunc("POST /crash", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "crashing")
		// Exit outside the handler so the response reaches the client first.
		crash <- struct{}{}
	})
	mux.HandleFunc("GET /file", func(w http.ResponseWriter, r *http.Request) {
		b, err := os.ReadFile(r.URL.Query().Get("path"))
		if errors.Is(err, os.ErrNotExist) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Write(b)
	})
	mux.HandleFunc("PUT /file", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil {
			err = os.WriteFile(r.URL.Query().Get("path"), b, 0o644)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})

	srv := &http.Server{Addr: ":" + envOr("PORT", "8080"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf("testapp %s listening on %s\n", version, srv.Addr)

	var crashAfter <-chan time.Time
	if d := os.Getenv("CRASH_AFTER"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			return fmt.Errorf("parse CRASH_AFTER: %w", err)
		}
		crashAfter = time.After(dur)
	}
	// As PID 1 in a container there is no default signal handling, so
	// without this `docker stop` would wait out its timeout and SIGKILL us.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)

	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-crashAfter:
		fmt.Println("CRASH_AFTER elapsed, exiting 1")
		os.Exit(1)
	case <-crash:
		time.Sleep(100 * time.Millisecond) // let the response flush
		fmt.Println("crash requested, exiting 1")
		os.Exit(1)
	case s := <-sigs:
		fmt.Printf("got %v, shutting down\n", s)
		if d, err := time.ParseDuration(os.Getenv("STOP_DELAY")); err == nil {
			// Keep serving while the network forgets this replica (Docker's
			// DNS, a proxy's pool), as a Kubernetes preStop sleep does:
			// closing the listener at once resets connections the kernel
			// accepted meanwhile.
			time.Sleep(d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

var httpClient = &http.Client{Timeout: 2 * time.Second}

func probe(url string) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: status %s", url, resp.Status)
	}
	return nil
}

func get(url string) error {
	resp, err := httpClient.Get(url)
	if err != nil {
		return fmt.Errorf("get: %w", err)
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return fmt.Errorf("get %s: read body: %w", url, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("get %s: status %s", url, resp.Status)
	}
	return nil
}

// job stands for a one-shot service (a migration, a seed): it works for a
// while and exits with the code asked for.
func job(args []string) error {
	fs := flag.NewFlagSet("job", flag.ContinueOnError)
	runFor := fs.Duration("for", 0, "how long the job runs")
	code := fs.Int("exit", 0, "exit code")
	if err := fs.Parse(args); err != nil {
		return err
	}
	time.Sleep(*runFor)
	fmt.Printf("job done after %s, exit %d\n", *runFor, *code)
	os.Exit(*code)
	return nil
}

func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	dur := fs.Duration("duration", 10*time.Second, "how long to send requests")
	out := fs.String("out", "", "file for the JSON result (default stdout)")
	// Pacing keeps a long run from exhausting ephemeral ports with sockets in
	// TIME_WAIT, since every request opens a new connection.
	interval := fs.Duration("interval", 5*time.Millisecond, "pause between requests")
	// Docker's embedded DNS can still hand out a replica's address for a few
	// milliseconds after its interface is gone (measured in issue 3's note),
	// and a SYN to that address is never answered. A client with a connect
	// timeout per address moves on to the next replica, as nginx's
	// proxy_next_upstream does; without one, Go's dialer spends the whole
	// request timeout on the first address.
	connectTimeout := fs.Duration("connect-timeout", 0, "per-address connect timeout; then try the next address (0: Go's default dialer)")
	// The URL comes first in the documented usage; flag stops at it.
	var url string
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		url, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if url == "" && fs.NArg() > 0 {
		url = fs.Arg(0)
	}
	if url == "" {
		return errors.New("usage: testapp load URL --duration D --out FILE")
	}

	res := struct {
		Requests int `json:"requests"`
		Failures int `json:"failures"`
		// Fallbacks counts connects that found an address dead and moved on.
		Fallbacks int      `json:"fallbacks"`
		Errors    []string `json:"errors"`
	}{Errors: []string{}}
	// No keep-alive: each request must find a live backend on its own, which
	// is what a zero-downtime rollout has to guarantee for new connections.
	transport := &http.Transport{DisableKeepAlives: true}
	if *connectTimeout > 0 {
		transport.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, skipped, err := dialEach(ctx, network, addr, *connectTimeout)
			res.Fallbacks += skipped
			return conn, err
		}
	}
	client := &http.Client{Timeout: 2 * time.Second, Transport: transport}
	// SIGTERM (docker stop) ends the run early with its result, so a test
	// can load a roll for exactly as long as the roll takes.
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	start := time.Now()
	for deadline := start.Add(*dur); time.Now().Before(deadline); {
		select {
		case <-stop:
			deadline = time.Now()
			continue
		default:
		}
		res.Requests++
		sent := time.Since(start)
		if err := probe2xx(client, url); err != nil {
			res.Failures++
			if len(res.Errors) < 10 {
				// When it was sent tells which step of a roll it met.
				res.Errors = append(res.Errors, fmt.Sprintf("at %s: %v", sent.Round(time.Millisecond), err))
			}
		}
		time.Sleep(*interval)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	b = append(b, '\n')
	if *out == "" {
		_, err = os.Stdout.Write(b)
		return err
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}

// dialEach resolves addr's host and dials its addresses in turn, each with
// its own timeout, returning how many it skipped.
func dialEach(ctx context.Context, network, addr string, timeout time.Duration) (net.Conn, int, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, 0, err
	}
	ips, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil {
		return nil, 0, err
	}
	var errs []error
	for i, ip := range ips {
		d := net.Dialer{Timeout: timeout}
		conn, err := d.DialContext(ctx, network, net.JoinHostPort(ip, port))
		if err == nil {
			return conn, i, nil
		}
		errs = append(errs, err)
	}
	return nil, len(ips), errors.Join(errs...)
}

func probe2xx(client *http.Client, url string) error {
	// The addresses dialled tell a failure's cause: a replica that had
	// already gone, or one that was still there but did not answer.
	// The hooks run on the resolver's goroutines too (its DNS queries for
	// A and AAAA are dialled in parallel), so the list is locked.
	var mu sync.Mutex
	var dialled []string
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		dialled = append(dialled, s)
	}
	trace := &httptrace.ClientTrace{
		ConnectStart: func(_, addr string) { note(addr) },
		ConnectDone: func(_, addr string, err error) {
			if err == nil {
				note("connected")
			}
		},
		WroteRequest: func(httptrace.WroteRequestInfo) { note("sent") },
	}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		mu.Lock()
		defer mu.Unlock()
		return fmt.Errorf("dialled %v: %w", dialled, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

// check is a verify command for restore tests: the file must be there, with
// the content given.
func check(args []string) error {
	if len(args) < 1 || len(args) > 2 {
		return errors.New("usage: testapp check FILE [CONTENT]")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	if len(args) == 2 && string(b) != args[1] {
		return fmt.Errorf("%s holds %q, want %q", args[0], b, args[1])
	}
	fmt.Printf("%s ok\n", args[0])
	return nil
}

func printEnv(args []string) error {
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	exit := fs.Int("exit", 0, "exit code")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, kv := range os.Environ() {
		fmt.Println(kv)
	}
	if *exit != 0 {
		os.Exit(*exit)
	}
	return nil
}
