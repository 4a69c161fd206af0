package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Exit statuses; see the package comment.
const (
	exitOK              = 0
	exitBenchmarkFailed = 1
	exitError           = 2
)

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdin, os.Stderr, HostProbe()))
}

// options are the command line.
type options struct {
	mdPath     string
	jsonPath   string
	sizesDir   string
	ratiosPath string
	rowsPath   string
	machine    bool
	raws       []string
}

// run is the program: it reads, builds and writes the report and returns
// the exit status.
func run(ctx context.Context, args []string, stdin io.Reader, stderr io.Writer, probe Probe) int {
	opts, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintln(stderr, "benchreport:", err)
		return exitError
	}
	report, warnings, err := build(ctx, opts, stdin, probe)
	for _, w := range warnings {
		fmt.Fprintln(stderr, "benchreport: warning:", w)
	}
	if err != nil {
		fmt.Fprintln(stderr, "benchreport:", err)
		return exitError
	}
	if err := writeReports(opts, report); err != nil {
		fmt.Fprintln(stderr, "benchreport:", err)
		return exitError
	}
	if report.Failed() {
		fmt.Fprintf(stderr, "benchreport: some benchmarks failed; see %s\n", opts.mdPath)
		return exitBenchmarkFailed
	}
	return exitOK
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("benchreport", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.mdPath, "md", "", "write the Markdown report to `PATH` (required)")
	fs.StringVar(&o.jsonPath, "json", "", "write the JSON report to `PATH` (required)")
	fs.StringVar(&o.sizesDir, "sizes", "", "report the size of each regular file in `DIR` (the release binaries)")
	fs.StringVar(&o.ratiosPath, "ratios", "", "compute the ratios listed in `FILE` (LABEL = PKG.BenchmarkA:unit / PKG.BenchmarkB:unit)")
	fs.StringVar(&o.rowsPath, "rows", "", "put the comparison table listed in `FILE` first (LABEL | GOAL | COLUMN=REF...)")
	fs.BoolVar(&o.machine, "machine", false, "probe the host: CPUs, memory, kernel, Go, Docker engine, git describe")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: benchreport -md PATH -json PATH [-sizes DIR] [-ratios FILE] [-rows FILE] [-machine] RAW...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.raws = fs.Args()
	switch {
	case o.mdPath == "":
		return o, errors.New("-md PATH is required")
	case o.jsonPath == "":
		return o, errors.New("-json PATH is required")
	case len(o.raws) == 0:
		return o, errors.New("no raw benchmark output given (RAW... or - for stdin)")
	}
	return o, nil
}

// build reads every input and assembles the report. Warnings are what the
// report was made despite; an error means there is no report to make.
func build(ctx context.Context, o options, stdin io.Reader, probe Probe) (Report, []string, error) {
	c := NewCollection()
	for _, path := range o.raws {
		if err := parseRaw(c, path, stdin); err != nil {
			return Report{}, c.Warnings, err
		}
	}
	var ratios []RatioSpec
	if o.ratiosPath != "" {
		data, err := os.ReadFile(o.ratiosPath)
		if err != nil {
			return Report{}, c.Warnings, fmt.Errorf("read ratios: %w", err)
		}
		if ratios, err = ParseRatios(bytes.NewReader(data), o.ratiosPath); err != nil {
			return Report{}, c.Warnings, err
		}
	}
	var rows RowsFile
	if o.rowsPath != "" {
		data, err := os.ReadFile(o.rowsPath)
		if err != nil {
			return Report{}, c.Warnings, fmt.Errorf("read rows: %w", err)
		}
		if rows, err = ParseRows(bytes.NewReader(data), o.rowsPath); err != nil {
			return Report{}, c.Warnings, err
		}
	}
	var sizes []Size
	if o.sizesDir != "" {
		var err error
		if sizes, err = ReadSizes(o.sizesDir); err != nil {
			return Report{}, c.Warnings, err
		}
	}
	machine, machineWarnings := DescribeMachine(ctx, probe, c, o.machine)
	warnings := append(c.Warnings, machineWarnings...)
	r := BuildReport(c, machine, sizes, ratios)
	r.Comparison = ComputeTable(rows, r.Benchmarks, r.Sizes)
	return r, warnings, nil
}

func parseRaw(c *Collection, path string, stdin io.Reader) error {
	if path == "-" {
		return c.Parse(stdin, "stdin")
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read raw benchmark output: %w", err)
	}
	defer f.Close()
	return c.Parse(f, path)
}

func writeReports(o options, r Report) error {
	var md, js bytes.Buffer
	if err := WriteMarkdown(&md, r); err != nil {
		return err
	}
	if err := WriteJSON(&js, r); err != nil {
		return err
	}
	if err := writeFile(o.mdPath, md.Bytes()); err != nil {
		return err
	}
	return writeFile(o.jsonPath, js.Bytes())
}

// writeFile creates the report's folder too: `make bench` writes into a
// fresh output folder.
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write report %s: %w", path, err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
