package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLoggerUnderSystemd: with JOURNAL_STREAM set, the default is text
// lines prefixed with their journald priority (so `journalctl -p err`
// finds errors), without a time of their own.
func TestLoggerUnderSystemd(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "8:12345")
	var buf bytes.Buffer
	log, err := newLogger(&buf, logOptions{level: "info"})
	if err != nil {
		t.Fatal(err)
	}
	log.Debug("not shown")
	log.Info("started", "stack", "web")
	log.With("stack", "web").Warn("slow")
	log.Error("failed", "err", "boom")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	want := []string{"<6>level=INFO msg=started stack=web", "<4>level=WARN msg=slow stack=web", "<3>level=ERROR msg=failed err=boom"}
	if len(lines) != len(want) {
		t.Fatalf("lines:\n%s", buf.String())
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Errorf("line %d: %q, want %q", i, lines[i], want[i])
		}
	}
}

// TestLoggerDurationsInSeconds: a time.Duration is logged as seconds under
// a key ending in _s, in JSON (not nanoseconds) and in text.
func TestLoggerDurationsInSeconds(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	var buf bytes.Buffer
	log, err := newLogger(&buf, logOptions{level: "debug"})
	if err != nil {
		t.Fatal(err)
	}
	log.Info("step done", "took", 1500*time.Millisecond, "timeout_s", 2*time.Second)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	if rec["took_s"] != 1.5 || rec["timeout_s"] != 2.0 || rec["took"] != nil {
		t.Fatalf("durations: %s", buf.String())
	}
	buf.Reset()
	log, _ = newLogger(&buf, logOptions{level: "info", format: "text"})
	log.Info("snapshot taken", "took", 250*time.Millisecond, "url", "https://h/hooks/abc?token=SECRET")
	if out := buf.String(); !strings.Contains(out, "took_s=0.25") || strings.Contains(out, "SECRET") {
		t.Fatalf("text: %s", out)
	}
	if _, err := newLogger(&buf, logOptions{level: "loud"}); err == nil {
		t.Fatal("a bad --log-level was accepted")
	}
	if _, err := newLogger(&buf, logOptions{level: "info", format: "xml"}); err == nil {
		t.Fatal("a bad --log-format was accepted")
	}
}

// TestLoggerJournalStreamIsStderr: JOURNAL_STREAM counts only when it
// names the very file logged to; an inherited one (a shell started from a
// service) leaves the default JSON.
func TestLoggerJournalStreamIsStderr(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	logTo := func(env string) string {
		t.Setenv("JOURNAL_STREAM", env)
		if err := f.Truncate(0); err != nil {
			t.Fatal(err)
		}
		if _, err := f.Seek(0, 0); err != nil {
			t.Fatal(err)
		}
		log, err := newLogger(f, logOptions{level: "info"})
		if err != nil {
			t.Fatal(err)
		}
		log.Error("failed")
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if out := logTo(fmt.Sprintf("%d:%d", st.Dev, st.Ino)); !strings.HasPrefix(out, "<3>level=ERROR msg=failed") {
		t.Fatalf("stderr is the journal stream: %q", out)
	}
	if out := logTo(fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)); !strings.HasPrefix(out, "{") {
		t.Fatalf("another journal stream: %q", out)
	}
}
