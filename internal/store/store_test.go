package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// openTest opens a store in a fresh directory and closes it at the end.
func openTest(t testing.TB) *Store {
	t.Helper()
	s, err := Open(context.Background(), filepath.Join(t.TempDir(), "gitopsd.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// at is a fixed instant with nanoseconds, in a zone other than UTC, so that
// round trips prove both precision and the conversion to UTC.
func at(sec int) time.Time {
	return time.Date(2025, 3, 30, 1, 59, sec, 123456789, time.FixedZone("CET", 3600))
}

func pragma(t *testing.T, db *sql.DB, name string) string {
	t.Helper()
	var v string
	if err := db.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatalf("PRAGMA %s: %v", name, err)
	}
	return v
}

func TestOpenMigratesAndReopens(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "dir", "gitopsd.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatalf("Open new: %v", err)
	}
	if got := pragma(t, s.db, "user_version"); got != fmt.Sprint(SchemaVersion()) {
		t.Errorf("user_version = %s, want %d", got, SchemaVersion())
	}
	for _, table := range []string{"revisions", "source_state", "stacks", "deployments", "deployment_steps"} {
		var n int
		if err := s.db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?`, table).Scan(&n); err != nil || n != 1 {
			t.Errorf("table %s: n=%d err=%v", table, n, err)
		}
	}
	// Every connection of both pools carries the DSN's pragmas: hold several
	// reader connections at once so the pool must open more than one.
	want := map[string]string{"journal_mode": "wal", "synchronous": "1", "foreign_keys": "1", "busy_timeout": "5000"}
	for name, v := range want {
		if got := pragma(t, s.db, name); got != v {
			t.Errorf("writer PRAGMA %s = %s, want %s", name, got, v)
		}
	}
	var conns []*sql.Conn
	for range readConns {
		c, err := s.rdb.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for i, c := range conns {
		for name, v := range want {
			var got string
			if err := c.QueryRowContext(ctx, "PRAGMA "+name).Scan(&got); err != nil || got != v {
				t.Errorf("reader %d PRAGMA %s = %s (%v), want %s", i, name, got, err, v)
			}
		}
		c.Close()
	}
	if _, err := s.rdb.Exec(`DELETE FROM stacks`); err == nil {
		t.Error("reader pool accepted a write")
	}

	dir, err := os.Stat(filepath.Dir(path))
	if err != nil || dir.Mode().Perm() != 0o700 {
		t.Errorf("state dir mode = %v (%v), want 0700", dir.Mode().Perm(), err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("db file mode = %v (%v), want 0600", fi.Mode().Perm(), err)
	}

	if err := s.PutStack(ctx, StackState{Name: "web", Sync: "Synced"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Reopen: no migration runs again, data is there.
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if got := pragma(t, s.db, "user_version"); got != fmt.Sprint(SchemaVersion()) {
		t.Errorf("user_version after reopen = %s", got)
	}
	if _, ok, err := s.Stack(ctx, "web"); !ok || err != nil {
		t.Errorf("stack after reopen: ok=%v err=%v", ok, err)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gitopsd.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion()+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err = Open(ctx, path)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("Open of a newer database: err = %v, want ErrSchemaTooNew", err)
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "schema version") {
		t.Errorf("error does not name the file and version: %v", err)
	}
}

func TestMigrationsAreNumberedInOrder(t *testing.T) {
	for i, m := range migrations {
		if m.version != i+1 || m.sql == "" {
			t.Errorf("migration %d: %+v", i, m)
		}
	}
}

func TestSourceState(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	got, err := s.SourceState(ctx)
	if err != nil || got != (SourceState{}) {
		t.Fatalf("before any put: %+v, %v", got, err)
	}
	for _, want := range []SourceState{
		{URL: "https://git.example.com/ops/fleet.git", Branch: "main", Head: "abc", FetchedAt: at(1)},
		{URL: "https://git.example.com/ops/fleet.git", Branch: "main", Head: "abc", FetchedAt: at(2), Error: "fetch: timeout"},
		{URL: "/srv/fleet", Branch: "prod"}, // zero time stays zero
	} {
		if err := s.PutSourceState(ctx, want); err != nil {
			t.Fatal(err)
		}
		got, err := s.SourceState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want.FetchedAt = utc(want.FetchedAt)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("SourceState = %+v, want %+v", got, want)
		}
	}
	var rows int
	s.db.QueryRow(`SELECT count(*) FROM source_state`).Scan(&rows)
	if rows != 1 {
		t.Errorf("source_state has %d rows, want 1", rows)
	}
}

// utc is t in UTC, keeping the zero time zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC()
}

func TestRecordRevisionOnce(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	r := Revision{SHA: "0123abcd", Message: "web: bump", Author: "Ada <ada@example.com>", CommittedAt: at(3), SeenAt: at(4)}
	if err := s.RecordRevision(ctx, r); err != nil {
		t.Fatal(err)
	}
	// A second record with other values is a no-op: the first sighting stays.
	if err := s.RecordRevision(ctx, Revision{SHA: r.SHA, Message: "other", SeenAt: at(9)}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Revision(ctx, r.SHA)
	if err != nil || !ok {
		t.Fatalf("Revision: ok=%v err=%v", ok, err)
	}
	r.CommittedAt, r.SeenAt = r.CommittedAt.UTC(), r.SeenAt.UTC()
	if !reflect.DeepEqual(got, r) {
		t.Errorf("Revision = %+v, want %+v", got, r)
	}
	if _, ok, err := s.Revision(ctx, "nope"); ok || err != nil {
		t.Errorf("unknown revision: ok=%v err=%v", ok, err)
	}
	if err := s.RecordRevision(ctx, Revision{}); err == nil {
		t.Error("empty sha accepted")
	}
}

func TestStacks(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	web := StackState{
		Name: "web", Revision: "r1", Target: "r2", Sync: "Progressing", Health: "Degraded", Pinned: true,
		Error: "stacks/web/compose.yaml:12: bad", LastHealthyRevision: "r1", FailedRevision: "r0", UpdatedAt: at(5),
	}
	for _, st := range []StackState{{Name: "zeta", Sync: "Synced", UpdatedAt: at(6)}, web, {Name: "alpha", Sync: "Invalid", UpdatedAt: at(7)}} {
		if err := s.PutStack(ctx, st); err != nil {
			t.Fatal(err)
		}
	}
	got, ok, err := s.Stack(ctx, "web")
	want := web
	want.UpdatedAt = want.UpdatedAt.UTC()
	if err != nil || !ok || !reflect.DeepEqual(got, want) {
		t.Errorf("Stack(web) = %+v, %v, %v; want %+v", got, ok, err, want)
	}

	// Replace.
	web.Pinned, web.Sync, web.Error, web.UpdatedAt = false, "Synced", "", at(8)
	if err := s.PutStack(ctx, web); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.Stack(ctx, "web")
	if got.Pinned || got.Sync != "Synced" || got.Error != "" || !got.UpdatedAt.Equal(at(8)) {
		t.Errorf("after replace: %+v", got)
	}

	all, err := s.Stacks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, st := range all {
		names = append(names, st.Name)
	}
	if !reflect.DeepEqual(names, []string{"alpha", "web", "zeta"}) {
		t.Errorf("Stacks order = %v", names)
	}

	if err := s.DeleteStack(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := s.Stack(ctx, "web"); ok || err != nil {
		t.Errorf("after delete: ok=%v err=%v", ok, err)
	}
	if err := s.DeleteStack(ctx, "web"); err != nil {
		t.Errorf("delete of a missing stack: %v", err)
	}

	// A zero UpdatedAt is stamped.
	before := time.Now()
	if err := s.PutStack(ctx, StackState{Name: "new"}); err != nil {
		t.Fatal(err)
	}
	got, _, _ = s.Stack(ctx, "new")
	if got.UpdatedAt.Before(before.Add(-time.Second)) || got.UpdatedAt.Location() != time.UTC {
		t.Errorf("stamped UpdatedAt = %v", got.UpdatedAt)
	}
	if err := s.PutStack(ctx, StackState{}); err == nil {
		t.Error("empty stack name accepted")
	}
}

func TestTimesRoundTripExactly(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	for _, tm := range []time.Time{
		time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC),
		time.Date(2025, 1, 2, 3, 4, 5, 1, time.UTC),
		time.Date(2025, 1, 2, 3, 4, 5, 999999999, time.FixedZone("x", -7*3600-1800)),
		time.Now(), // carries a monotonic reading, which is dropped
	} {
		if err := s.PutSourceState(ctx, SourceState{FetchedAt: tm}); err != nil {
			t.Fatal(err)
		}
		got, _ := s.SourceState(ctx)
		if got.FetchedAt != tm.UTC().Round(0) {
			t.Errorf("time %v came back as %v", tm, got.FetchedAt)
		}
	}
	// Stored text sorts in time order.
	var a, b string
	s.db.QueryRow(`SELECT ?, ?`, timeArg(time.Date(2025, 1, 1, 0, 0, 5, 0, time.UTC)), timeArg(time.Date(2025, 1, 1, 0, 0, 5, 500, time.UTC))).Scan(&a, &b)
	if !(a < b) {
		t.Errorf("stored times do not sort: %q >= %q", a, b)
	}
}

// Writers of several goroutines all land, while readers read.
func TestConcurrentWriters(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	id, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll"})
	if err != nil {
		t.Fatal(err)
	}
	const writers, perWriter = 8, 50
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter+writers)
	stop := make(chan struct{})
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if _, err := s.AddStep(ctx, Step{DeploymentID: id, Action: "create", Service: fmt.Sprintf("w%d", w), Detail: fmt.Sprint(i)}); err != nil {
					errs <- err
				}
			}
		}()
	}
	var readers sync.WaitGroup
	for range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.Deployments(ctx, "web", 10); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	d, _, err := s.Deployment(ctx, id)
	if err != nil || len(d.Steps) != writers*perWriter {
		t.Fatalf("%d steps landed, want %d (%v)", len(d.Steps), writers*perWriter, err)
	}
	// Each writer's steps are in its own order.
	next := map[string]int{}
	for _, st := range d.Steps {
		if st.Detail != fmt.Sprint(next[st.Service]) {
			t.Fatalf("writer %s: step %s out of order", st.Service, st.Detail)
		}
		next[st.Service]++
	}
}

// Two stores on one file, as two processes would be: writes of one are
// seen by the other, and their writers wait for each other under busy_timeout.
func TestTwoHandlesOneFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "gitopsd.db")
	a, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var wg sync.WaitGroup
	for _, s := range []*Store{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if _, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	ds, err := a.Deployments(ctx, "", 0)
	if err != nil || len(ds) != 100 {
		t.Errorf("%d deployments, want 100 (%v)", len(ds), err)
	}
}
