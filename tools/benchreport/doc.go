// Benchreport turns the raw output of `go test -bench` into the benchmark
// report that `make bench` leaves behind: Markdown for people, JSON for
// machines. It owns the parsing of that output, the statistics of repeated
// runs (median and spread), the description of the machine the figures come
// from, binary sizes, and ratios between figures measured in the same run.
//
// It never compares with an earlier report: absolute times hold for one
// machine and one run only. Only a ratio of two figures measured side by
// side in one run is meant to be compared across runs.
//
// # Usage
//
//	go run ./tools/benchreport -md PATH -json PATH [-sizes DIR] [-ratios FILE] [-rows FILE] [-machine] RAW...
//
//	-md PATH      write the Markdown report to PATH (required)
//	-json PATH    write the JSON report to PATH (required)
//	-sizes DIR    each regular file in DIR (dist/gitopsd-linux-amd64, ...)
//	              becomes a figure "binary size NAME" in MiB: one run, no spread
//	-ratios FILE  derived ratios to compute, see below
//	-rows FILE    the comparison table that leads the report, see below
//	-machine      probe the host: CPUs, memory, kernel, Go, the Docker engine
//	              (`docker version`), `git describe --always --dirty`
//	RAW...        files of raw `go test -bench` output; "-" reads stdin
//
// Exit status: 0 when the reports are written and no benchmark failed; 1
// when they are written and at least one benchmark failed (the report says
// which and why); 2 on a usage or input error, in which case no report is
// written.
//
// # Input
//
// RAW files are read as the Go benchmark format defines them
// (golang.org/x/perf, "benchfmt"): a result line is
//
//	BenchmarkName[-procs] <iterations> <value> <unit> [<value> <unit>...]
//
// with fields separated by runs of white space. Names may hold "/" (sub-
// benchmarks) and "=" (BenchmarkRoll/stacks=10). The -procs suffix is
// GOMAXPROCS and is dropped, so `-count N` runs of one benchmark pool into
// one figure; a warning says so when one benchmark ran with several
// GOMAXPROCS values (-cpu 1,4), since those runs are pooled too.
// Configuration lines ("key: value") set the package ("pkg:") each
// following benchmark belongs to, and the CPU model ("cpu:"). Every other
// line (PASS, ok, b.Logf output, noise) is ignored; a line that starts like
// a benchmark result but does not parse is skipped with a warning on
// stderr.
//
// A "--- FAIL: BenchmarkX" or "--- SKIP: BenchmarkX" line marks X failed
// or skipped; its reason is the first indented line after it, or, in -v
// output where the log comes first, the first indented line after the bare
// "BenchmarkX" line. A failed parent whose reason is empty is reported as
// failed because of a sub-benchmark.
//
// # Figures
//
// Each (benchmark, unit) pair is one figure: the number of runs n, the
// median (the mean of the two middle values when n is even), min, max, and
// the spread, (max-min)/2/|median| as a percentage of the median. The
// spread is undefined (null in JSON) for a single run, or for a zero
// median with differing values. Custom metrics (b.ReportMetric: heal-s,
// failed-requests, MB/s, ...) come first, then ns/op (shown as time/op in
// ns, µs, ms or s), B/op and allocs/op.
//
// # Ratios file
//
// One ratio per line; blank lines and lines starting with "#" are ignored:
//
//	# LABEL = NUMERATOR / DENOMINATOR
//	heal vs poll = daemon.BenchmarkHealDrift:heal-s / daemon.BenchmarkPollOnly:heal-s
//	roll errors  = daemon.BenchmarkRoll/stacks=10:failed-requests / daemon.BenchmarkRoll/stacks=1:failed-requests
//
// The label is everything before the first "=" (so a label holds no "=").
// The two operands are separated by " / " with a space on each side, which
// no benchmark name holds (go test turns spaces in names into "_"). An
// operand is PACKAGE.BenchmarkName:UNIT: UNIT is what follows the last
// ":", the package is what comes before ".Benchmark", given in full
// (github.com/gitopsd/gitopsd/internal/daemon) or as its trailing path
// elements (daemon, internal/daemon), or left out ("BenchmarkX:ns/op")
// for a name no other package has. A malformed line is an input error
// that names the file and line.
//
// The value of a ratio is the ratio of the two medians. Its range, min to
// max, is the extreme quotients of the numerator's and the denominator's
// min and max, so it bounds every quotient of one run by another; it is
// undefined when the denominator's range holds zero. A ratio whose operand
// is missing (or failed), is ambiguous, or whose denominator has a zero
// median has no value and says why: "n/a (missing
// daemon.BenchmarkX:heal-s)".
//
// # Rows file
//
// The comparison table (issue 20's: gitopsd beside docker compose and
// doco-cd), one row per line; blank lines and "#" lines are ignored:
//
//	# LABEL | GOAL | COLUMN=REF [| COLUMN=REF...]
//	columns: doco-cd | compose | gitopsd
//	local push → new container running | ≤ compose | compose=daemon.BenchmarkCommitToRunning/runs:ms-compose-up-to-start | gitopsd=daemon.BenchmarkCommitToRunning/runs:ms-push-to-start-watch
//	stripped binary, amd64 | ≤ 20 MiB | gitopsd=size:gitopsd-linux-amd64
//
// Fields are separated by " | ". A REF is an operand as in the ratios file,
// or size:NAME for a file of -sizes. The "columns:" line orders the
// columns; columns it does not name follow in the order they first appear.
// Each cell shows the median with the minimum and maximum over its runs; a
// cell without a figure says why, and a benchmark that skipped or failed
// is listed once under the table with its reason, in its own words.
//
// A benchmark that repeats a measurement inside one run records each
// repeat as a result line of its own, named NAME/runs, in the file
// $GITOPSD_BENCH_SAMPLES (testenv.BenchSamples); make bench passes that
// file as one more RAW, so those figures have one value per repeat.
//
// # JSON report
//
// Field names are stable; a field that does not apply is null, "" or [],
// never left out.
//
//	{
//	  "version": 1,
//	  "machine": {
//	    "probed": true,                 // false without -machine: only date, goos, goarch, cpu_model are set
//	    "date": "2026-01-02T15:04:05Z", // UTC, when the report was made
//	    "goos": "linux", "goarch": "amd64", // from the raw output
//	    "cpu_model": "...",             // raw "cpu:" line, else /proc/cpuinfo
//	    "cpus": 2,                      // runtime.NumCPU
//	    "mem_total_bytes": 4102312345,  // /proc/meminfo MemTotal
//	    "kernel": "6.8.0-50-generic",   // /proc/sys/kernel/osrelease
//	    "go_version": "go1.26.8",
//	    "engine_version": "29.1.3",     // "unknown" when docker version failed
//	    "engine_api_version": "1.52",   // "unknown" likewise
//	    "engine_error": "",             // why docker version failed
//	    "git_describe": "v0.1.0-3-gabc1234-dirty" // "unknown" when git failed
//	  },
//	  "benchmarks": [{                  // by package, then name
//	    "package": "github.com/gitopsd/gitopsd/internal/daemon",
//	    "name": "BenchmarkRoll/stacks=10", // without the -procs suffix
//	    "status": "ok",                 // "ok", "skipped" or "failed"
//	    "reason": "",                   // first reason line when not ok
//	    "metrics": [{                   // custom units, then ns/op, B/op, allocs/op
//	      "unit": "heal-s", "n": 3, "median": 1.37, "min": 1.31, "max": 1.45,
//	      "spread_pct": 5.11,           // null when undefined
//	      "values": [1.37, 1.31, 1.45]  // in the order they were read
//	    }]
//	  }],
//	  "sizes": [{"name": "gitopsd-linux-amd64", "bytes": 12582912, "mib": 12}],
//	  "ratios": [{
//	    "label": "heal vs poll",
//	    "value": 2.31, "min": 2.05, "max": 2.6, // null when there is no value
//	    "numerator":   {"ref": "daemon.BenchmarkHealDrift:heal-s", "package": "...", "name": "...", "unit": "heal-s", "n": 3, "median": 1.37},
//	    "denominator": {...},           // package "", n 0 and median null when missing
//	    "missing": [],                  // refs of the operands not found
//	    "reason": ""                    // why value is null
//	  }],
//	  "comparison": {                   // the -rows table; empty lists without -rows
//	    "columns": ["doco-cd", "compose", "gitopsd"],
//	    "rows": [{                      // in the file's order
//	      "label": "idle RSS", "goal": "≤ 20 MiB",
//	      "cells": [{"column": "gitopsd", "ref": "...", "unit": "MiB-idle-rss",
//	        "n": 5, "median": 33.1, "min": 32.8, "max": 34,  // null without a figure
//	        "status": "ok",             // the benchmark's; "" for a size or a missing one
//	        "reason": ""}]              // why there is no figure
//	    }],
//	    "not_measured": [{"benchmark": "BenchmarkDocoCD", "status": "skipped", "reason": "..."}]
//	  }
//	}
package main
