package main

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
)

// RowSpec is one line of the rows file: a figure of a comparison table and
// where each column's value comes from.
type RowSpec struct {
	Label   string
	Goal    string
	Columns []ColumnRef
}

// ColumnRef names the figure of one column: a benchmark's (Operand) or a
// binary's size (Size, the file name in -sizes).
type ColumnRef struct {
	Column  string
	Operand Operand
	Size    string
}

// RowsFile is what a rows file holds: the columns' order, and the rows.
type RowsFile struct {
	Columns []string // from the "columns:" line; others follow as they appear
	Rows    []RowSpec
}

// ParseRows reads a rows file (see the package comment). Like the ratios
// file it is written by hand, so a malformed line is an error naming the
// file and line.
func ParseRows(r io.Reader, source string) (RowsFile, error) {
	var f RowsFile
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cols, ok := strings.CutPrefix(line, "columns:"); ok {
			for _, c := range strings.Split(cols, " | ") {
				f.Columns = append(f.Columns, strings.TrimSpace(c))
			}
			continue
		}
		spec, err := parseRowLine(line)
		if err != nil {
			return RowsFile{}, fmt.Errorf("%s:%d: %w", source, n, err)
		}
		f.Rows = append(f.Rows, spec)
	}
	if err := sc.Err(); err != nil {
		return RowsFile{}, fmt.Errorf("read %s: %w", source, err)
	}
	return f, nil
}

func parseRowLine(line string) (RowSpec, error) {
	fields := strings.Split(line, " | ")
	if len(fields) < 3 {
		return RowSpec{}, fmt.Errorf(`want "LABEL | GOAL | COLUMN=REF [| COLUMN=REF...]", got %q`, line)
	}
	spec := RowSpec{Label: strings.TrimSpace(fields[0]), Goal: strings.TrimSpace(fields[1])}
	if spec.Label == "" {
		return RowSpec{}, fmt.Errorf("row %q: empty label", line)
	}
	for _, f := range fields[2:] {
		column, ref, ok := strings.Cut(strings.TrimSpace(f), "=")
		column, ref = strings.TrimSpace(column), strings.TrimSpace(ref)
		if !ok || column == "" || ref == "" {
			return RowSpec{}, fmt.Errorf("row %q: want COLUMN=REF, got %q", spec.Label, f)
		}
		if slices.ContainsFunc(spec.Columns, func(c ColumnRef) bool { return c.Column == column }) {
			return RowSpec{}, fmt.Errorf("row %q: column %q given twice", spec.Label, column)
		}
		c := ColumnRef{Column: column}
		if name, isSize := strings.CutPrefix(ref, "size:"); isSize {
			c.Size = name
		} else {
			op, err := parseOperand(ref)
			if err != nil {
				return RowSpec{}, fmt.Errorf("row %q column %q: %w", spec.Label, column, err)
			}
			c.Operand = op
		}
		spec.Columns = append(spec.Columns, c)
	}
	return spec, nil
}

// Table is the comparison table as the report shows it.
type Table struct {
	Columns []string `json:"columns"`
	Rows    []Row    `json:"rows"`
	// NotMeasured says once, per benchmark that skipped or failed, why a
	// cell naming it has no figure.
	NotMeasured []NotMeasured `json:"not_measured"`
}

// NotMeasured is a benchmark a cell names that skipped or failed.
type NotMeasured struct {
	Benchmark string `json:"benchmark"`
	Status    Status `json:"status"`
	Reason    string `json:"reason"`
}

// Row is one row of the comparison table as the report shows it.
type Row struct {
	Label string `json:"label"`
	Goal  string `json:"goal"`
	Cells []Cell `json:"cells"`
}

// Cell is one column's figure of a row: its minimum, median and maximum
// over the runs, or why there is none.
type Cell struct {
	Column string   `json:"column"`
	Ref    string   `json:"ref"`
	Unit   string   `json:"unit"`
	N      int      `json:"n"`
	Median *float64 `json:"median"`
	Min    *float64 `json:"min"`
	Max    *float64 `json:"max"`
	Status Status   `json:"status"` // of the benchmark; "" for a size or a missing figure
	Reason string   `json:"reason"` // why there is no figure
}

// ComputeTable resolves every cell against the benchmarks and sizes.
func ComputeTable(f RowsFile, benchmarks []BenchmarkReport, sizes []Size) Table {
	t := Table{Columns: slices.Clone(f.Columns), Rows: []Row{}, NotMeasured: []NotMeasured{}}
	for _, spec := range f.Rows {
		row := Row{Label: spec.Label, Goal: spec.Goal, Cells: []Cell{}}
		for _, c := range spec.Columns {
			cell := computeCell(c, benchmarks, sizes)
			row.Cells = append(row.Cells, cell)
			if !slices.Contains(t.Columns, c.Column) {
				t.Columns = append(t.Columns, c.Column)
			}
			if cell.Status == StatusSkipped || cell.Status == StatusFailed {
				nm := NotMeasured{Benchmark: c.Operand.Name, Status: cell.Status, Reason: cell.Reason}
				if !slices.Contains(t.NotMeasured, nm) {
					t.NotMeasured = append(t.NotMeasured, nm)
				}
			}
		}
		t.Rows = append(t.Rows, row)
	}
	if t.Columns == nil {
		t.Columns = []string{}
	}
	return t
}

func computeCell(c ColumnRef, benchmarks []BenchmarkReport, sizes []Size) Cell {
	if c.Size != "" {
		cell := Cell{Column: c.Column, Ref: "size:" + c.Size, Unit: "MiB"}
		i := slices.IndexFunc(sizes, func(s Size) bool { return s.Name == c.Size })
		if i < 0 {
			cell.Reason = "missing size " + c.Size
			return cell
		}
		v := sizes[i].MiB
		cell.N, cell.Median, cell.Min, cell.Max = 1, &v, &v, &v
		return cell
	}
	cell := Cell{Column: c.Column, Ref: c.Operand.Ref, Unit: c.Operand.Unit}
	res := resolve(c.Operand, benchmarks)
	if res.summary == nil {
		cell.Reason = res.problem
		// A benchmark that skipped or failed says why in its own words:
		// "doco-cd not compared: ..." is the line the reader needs.
		for _, b := range benchmarks {
			if b.Name == c.Operand.Name && packageMatches(b.Package, c.Operand.Package) && b.Status != StatusOK {
				cell.Status = b.Status
				cell.Reason = orDefault(b.Reason, "(no reason printed)")
			}
		}
		return cell
	}
	s := res.summary
	median, lo, hi := s.Median, s.Min, s.Max
	cell.N, cell.Median, cell.Min, cell.Max, cell.Status = s.N, &median, &lo, &hi, StatusOK
	return cell
}

// formatCell is "0.71 (0.65–0.8, n=5) ms-unit"; one run shows no range.
func formatCell(c Cell) string {
	switch {
	case c.Median == nil && c.Status != "":
		return "n/a (" + c.Operand() + " " + string(c.Status) + ", see below)"
	case c.Median == nil:
		return "n/a (" + cell(c.Reason) + ")"
	}
	s := Summary{Unit: c.Unit, N: c.N, Median: *c.Median, Min: *c.Min, Max: *c.Max}
	if c.N < 2 {
		return formatMedian(s) + " " + cell(metricLabel(c.Unit)) + " (one run)"
	}
	return formatMedian(s) + " " + cell(metricLabel(c.Unit)) + " (min " + formatNumber(s.Min) + ", max " + formatNumber(s.Max) + ", n=" + fmt.Sprint(s.N) + ")"
}

// Operand is the benchmark name of the cell's reference, without package
// and unit.
func (c Cell) Operand() string {
	ref, _, _ := cutLast(c.Ref, ":")
	if i := strings.Index(ref, ".Benchmark"); i >= 0 {
		ref = ref[i+1:]
	}
	return ref
}
