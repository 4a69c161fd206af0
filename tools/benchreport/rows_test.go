package main

import (
	"strings"
	"testing"
)

func TestRows(t *testing.T) {
	raw := `pkg: example.com/x/internal/daemon
BenchmarkCommitToRunning-2 	1	9 ns/op	700 ms-push-to-start-watch	480 ms-compose-up-to-start
BenchmarkCommitToRunning/runs 1 650 ms-push-to-start-watch
BenchmarkCommitToRunning/runs 1 710 ms-push-to-start-watch
BenchmarkCommitToRunning/runs 1 800 ms-push-to-start-watch
BenchmarkDocoCD
    doco_bench_test.go:22: doco-cd v0.110.1 not compared: 403 Forbidden
--- SKIP: BenchmarkDocoCD
`
	c := NewCollection()
	if err := c.Parse(strings.NewReader(raw), "raw"); err != nil {
		t.Fatal(err)
	}
	specs, err := ParseRows(strings.NewReader(`# comment
columns: doco-cd | compose
local push to running | no slower than compose | doco-cd=daemon.BenchmarkDocoCD:ms-push | compose=daemon.BenchmarkCommitToRunning:ms-compose-up-to-start | gitopsd=daemon.BenchmarkCommitToRunning/runs:ms-push-to-start-watch
binary | ≤ 20 MiB | gitopsd=size:gitopsd-linux-amd64 | compose=size:docker-compose
`), "rows.txt")
	if err != nil {
		t.Fatal(err)
	}
	r := BuildReport(c, Machine{}, []Size{{Name: "gitopsd-linux-amd64", Bytes: 3 << 20, MiB: 3}}, nil)
	r.Comparison = ComputeTable(specs, r.Benchmarks, r.Sizes)
	rows := r.Comparison.Rows
	if len(rows) != 2 {
		t.Fatalf("rows = %+v", rows)
	}
	if got := strings.Join(r.Comparison.Columns, ","); got != "doco-cd,compose,gitopsd" {
		t.Errorf("columns = %s, want the columns line's order, then the others as they appear", got)
	}
	push := rows[0].Cells
	if push[0].Median != nil || push[0].Status != StatusSkipped || !strings.Contains(push[0].Reason, "403 Forbidden") {
		t.Errorf("doco-cd cell = %+v, want the skip and its reason", push[0])
	}
	if push[1].N != 1 || *push[1].Median != 480 {
		t.Errorf("compose cell = %+v", push[1])
	}
	if g := push[2]; g.N != 3 || *g.Median != 710 || *g.Min != 650 || *g.Max != 800 {
		t.Errorf("gitopsd cell = %+v, want the three samples", g)
	}
	if size := rows[1].Cells; *size[0].Median != 3 || size[1].Median != nil || size[1].Reason != "missing size docker-compose" {
		t.Errorf("size cells = %+v", size)
	}
	md := markdown(t, r)
	for _, want := range []string{
		"| Figure | doco-cd | compose | gitopsd | goal |",
		"| local push to running | n/a (BenchmarkDocoCD skipped, see below) | 480 ms-compose-up-to-start (one run) | 710 ms-push-to-start-watch (min 650, max 800, n=3) | no slower than compose |",
		"| binary | – | n/a (missing size docker-compose) | 3 MiB (one run) | ≤ 20 MiB |",
		"\n- `BenchmarkDocoCD` skipped: doco_bench_test.go:22: doco-cd v0.110.1 not compared: 403 Forbidden\n",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestParseRowsErrors(t *testing.T) {
	for _, line := range []string{
		"only a label",
		"label | goal | gitopsd",
		"label | goal | gitopsd=notabenchmark:unit",
		"label | goal | a=size:x | a=size:y",
		" | goal | a=size:x",
	} {
		if _, err := ParseRows(strings.NewReader(line), "rows.txt"); err == nil || !strings.HasPrefix(err.Error(), "rows.txt:1: ") {
			t.Errorf("ParseRows(%q) = %v, want an error naming rows.txt:1", line, err)
		}
	}
}
