package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	gosync "sync"
	"syscall"

	"github.com/gitopsd/gitopsd/internal/secrets"
)

// logOptions are run's --log-level and --log-format.
type logOptions struct {
	level  string // debug, info, warn, error
	format string // json, text, or "" for the default
}

// newLogger builds the daemon's logger. The default format is json, except
// under systemd (stderr is the JOURNAL_STREAM: it goes to the journal), where it
// is text with each line prefixed by its syslog priority (<3> for an error,
// sd-daemon(3)), so `journalctl -p err` finds errors. Durations are logged
// in seconds (key suffixed _s), and URLs have their credentials redacted.
func newLogger(w io.Writer, o logOptions) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.level)); err != nil {
		return nil, usageError{fmt.Errorf("--log-level %q: want debug, info, warn or error", o.level)}
	}
	journal := toJournal(w)
	format := o.format
	if format == "" {
		format = "json"
		if journal {
			format = "text"
		}
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: durationSeconds}
	if journal {
		// journald stamps every line itself.
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return durationSeconds(groups, a)
		}
	}
	var h slog.Handler
	switch format {
	case "json":
		if journal {
			pw := &priorityWriter{out: w}
			h = priorityHandler{inner: slog.NewJSONHandler(pw, opts), w: pw}
		} else {
			h = slog.NewJSONHandler(w, opts)
		}
	case "text":
		if journal {
			pw := &priorityWriter{out: w}
			h = priorityHandler{inner: slog.NewTextHandler(pw, opts), w: pw}
		} else {
			h = slog.NewTextHandler(w, opts)
		}
	default:
		return nil, usageError{fmt.Errorf("--log-format %q: want json or text", o.format)}
	}
	return slog.New(secrets.URLHandler(h)), nil
}

// toJournal says whether w is the stream systemd connected to the journal:
// JOURNAL_STREAM names its device and inode (systemd.exec(5)). A process
// started from a service's shell inherits the variable with another
// stderr, so the two are compared when w is a file.
func toJournal(w io.Writer) bool {
	env := os.Getenv("JOURNAL_STREAM")
	if env == "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return true // a test's buffer stands for the stream
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return env == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// durationSeconds renders a time.Duration as float seconds, its key
// suffixed _s: `took_s=1.234`, not `took=1234000000` in JSON.
func durationSeconds(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() != slog.KindDuration {
		return a
	}
	key := a.Key
	if !strings.HasSuffix(key, "_s") && !strings.HasSuffix(key, "_seconds") {
		key += "_s"
	}
	return slog.Float64(key, a.Value.Duration().Seconds())
}

// priorityHandler prefixes each line with the journald priority of its
// level: <7> debug, <6> info, <4> warning, <3> error.
type priorityHandler struct {
	inner slog.Handler
	w     *priorityWriter
}

// priorityWriter writes each line with the prefix set for it; the mutex is
// held from setting the prefix to the handler's one write of the line.
type priorityWriter struct {
	mu     gosync.Mutex
	out    io.Writer
	prefix string
}

func (w *priorityWriter) Write(p []byte) (int, error) {
	if _, err := io.WriteString(w.out, w.prefix); err != nil {
		return 0, err
	}
	return w.out.Write(p)
}

func priority(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "<3>"
	case l >= slog.LevelWarn:
		return "<4>"
	case l >= slog.LevelInfo:
		return "<6>"
	}
	return "<7>"
}

func (h priorityHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h priorityHandler) Handle(ctx context.Context, r slog.Record) error {
	h.w.mu.Lock()
	defer h.w.mu.Unlock()
	h.w.prefix = priority(r.Level)
	return h.inner.Handle(ctx, r)
}

func (h priorityHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return priorityHandler{inner: h.inner.WithAttrs(attrs), w: h.w}
}

func (h priorityHandler) WithGroup(name string) slog.Handler {
	return priorityHandler{inner: h.inner.WithGroup(name), w: h.w}
}
