package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// absoluteTimesNote is the report's warning against the comparison people
// make first: this week's time against last week's, on another machine or
// under another load.
const absoluteTimesNote = "> Absolute figures (times, throughputs) hold for this machine and this run only: " +
	"never compare them across runs or machines. Only ratios of figures measured side by side " +
	"in one run (see Ratios) are comparable from one report to the next."

// WriteMarkdown writes the report for people.
func WriteMarkdown(w io.Writer, r Report) error {
	var b strings.Builder
	b.WriteString("# gitopsd benchmark report\n\n")
	writeMachine(&b, r.Machine)
	b.WriteString("\n" + absoluteTimesNote + "\n")
	writeComparison(&b, r.Comparison)
	writeBenchmarks(&b, r.Benchmarks)
	writeSizes(&b, r.Sizes)
	writeRatios(&b, r.Ratios)
	writeNotOK(&b, r.Benchmarks)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("write Markdown report: %w", err)
	}
	return nil
}

func writeMachine(b *strings.Builder, m Machine) {
	b.WriteString("## Machine\n\n")
	rows := [][2]string{{"Date (UTC)", m.Date}}
	if m.GOOS != "" || m.GOARCH != "" {
		rows = append(rows, [2]string{"OS/arch", m.GOOS + "/" + m.GOARCH})
	}
	rows = append(rows, [2]string{"CPU", orDefault(m.CPUModel, unknown)})
	if m.Probed {
		rows = append(rows,
			[2]string{"CPUs", strconv.Itoa(m.CPUs)},
			[2]string{"Memory", memory(m.MemTotalBytes)},
			[2]string{"Kernel", orDefault(m.Kernel, unknown)},
			[2]string{"Go", orDefault(m.GoVersion, unknown)},
			[2]string{"Docker engine", engine(m)},
			[2]string{"Commit", orDefault(m.GitDescribe, unknown)},
		)
	}
	for _, row := range rows {
		fmt.Fprintf(b, "- %s: %s\n", row[0], strings.ReplaceAll(row[1], "\n", " "))
	}
	if !m.Probed {
		b.WriteString("\nThe host was not probed (run with -machine for CPUs, memory, kernel, Go, engine and commit).\n")
	}
}

func engine(m Machine) string {
	if m.EngineError != "" {
		return unknown + " (" + m.EngineError + ")"
	}
	return m.EngineVersion + " (API " + m.EngineAPIVersion + ")"
}

func memory(bytes uint64) string {
	if bytes == 0 {
		return unknown
	}
	return formatNumber(float64(bytes)/(1<<30)) + " GiB"
}

func writeBenchmarks(b *strings.Builder, benchmarks []BenchmarkReport) {
	b.WriteString("\n## Benchmarks\n")
	pkg, seen := "", false
	for _, bench := range benchmarks {
		if len(bench.Metrics) == 0 {
			continue // failed or skipped in every run: listed at the end
		}
		if !seen || bench.Package != pkg {
			pkg, seen = bench.Package, true
			fmt.Fprintf(b, "\n### %s\n\n", cell(orDefault(pkg, "(no package line)")))
			table(b, "Benchmark", "metric", "median", "spread (min–max)", "runs")
		}
		for _, s := range bench.Metrics {
			tableRow(b, code(bench.Name), cell(metricLabel(s.Unit)), formatMedian(s), formatSpread(s), strconv.Itoa(s.N))
		}
	}
	if !seen {
		b.WriteString("\nNo benchmark results.\n")
	}
}

// writeComparison is the comparison table, first: the figures the report
// exists for, each column measured in this run.
func writeComparison(b *strings.Builder, t Table) {
	if len(t.Rows) == 0 {
		return
	}
	b.WriteString("\n## Comparison\n\n")
	b.WriteString("Median, with the minimum and maximum over n runs, each column measured in this run.\n\n")
	table(b, append(append([]string{"Figure"}, t.Columns...), "goal")...)
	for _, r := range t.Rows {
		cells := []string{cell(r.Label)}
		for _, col := range t.Columns {
			text := "–"
			for _, c := range r.Cells {
				if c.Column == col {
					text = formatCell(c)
				}
			}
			cells = append(cells, text)
		}
		tableRow(b, append(cells, cell(orDefault(r.Goal, "–")))...)
	}
	if len(t.NotMeasured) > 0 {
		b.WriteString("\n")
	}
	for _, nm := range t.NotMeasured {
		fmt.Fprintf(b, "- %s %s: %s\n", code(nm.Benchmark), nm.Status, strings.ReplaceAll(nm.Reason, "\n", " "))
	}
}

func writeSizes(b *strings.Builder, sizes []Size) {
	b.WriteString("\n## Binary sizes\n\n")
	if len(sizes) == 0 {
		b.WriteString("None measured (-sizes not given or the folder holds no files).\n")
		return
	}
	table(b, "Figure", "size", "runs")
	for _, s := range sizes {
		tableRow(b, cell("binary size "+s.Name), formatNumber(s.MiB)+" MiB", "1")
	}
}

func writeRatios(b *strings.Builder, ratios []Ratio) {
	b.WriteString("\n## Ratios\n\n")
	if len(ratios) == 0 {
		b.WriteString("None asked for (-ratios).\n")
		return
	}
	b.WriteString("Each value is the ratio of the two medians; the range bounds the quotient of any run of the numerator by any run of the denominator.\n\n")
	table(b, "Ratio", "value", "range (min–max)", "numerator / denominator")
	for _, r := range ratios {
		value, span := "n/a ("+cell(r.Reason)+")", "—"
		if r.Value != nil {
			value = formatNumber(*r.Value)
		}
		if r.Min != nil && r.Max != nil {
			span = formatNumber(*r.Min) + "–" + formatNumber(*r.Max)
		}
		tableRow(b, cell(r.Label), value, span, code(r.Numerator.Ref)+" / "+code(r.Denominator.Ref))
	}
}

// writeNotOK lists failed and skipped benchmarks, so a broken benchmark is
// seen rather than silently missing from the tables.
func writeNotOK(b *strings.Builder, benchmarks []BenchmarkReport) {
	b.WriteString("\n## Failed and skipped benchmarks\n\n")
	seen := false
	for _, bench := range benchmarks {
		if bench.Status == StatusOK {
			continue
		}
		if !seen {
			table(b, "Benchmark", "package", "status", "reason")
			seen = true
		}
		tableRow(b, code(bench.Name), cell(orDefault(bench.Package, "(no package line)")), string(bench.Status), cell(orDefault(bench.Reason, "(no reason printed)")))
	}
	if !seen {
		b.WriteString("None.\n")
	}
}

func table(b *strings.Builder, header ...string) {
	tableRow(b, header...)
	seps := make([]string, len(header))
	for i := range seps {
		seps[i] = "---"
	}
	tableRow(b, seps...)
}

func tableRow(b *strings.Builder, cells ...string) {
	b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
}

// cell makes text safe inside a table cell: a "|" would end the cell and
// a newline the row.
func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

// code shows a benchmark name or reference as code, so "_" and "*" in it
// are not read as emphasis.
func code(s string) string {
	return "`" + cell(s) + "`"
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
