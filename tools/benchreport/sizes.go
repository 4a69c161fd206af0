package main

import (
	"fmt"
	"os"
	"path/filepath"
)

// Size is the size of one binary: a figure of one run, without spread.
type Size struct {
	Name  string  `json:"name"`
	Bytes int64   `json:"bytes"`
	MiB   float64 `json:"mib"`
}

// ReadSizes measures each regular file in dir, by name. Directories and
// symbolic links are left out: dist/ may hold package folders and links
// to the binaries, which would count twice.
func ReadSizes(dir string) ([]Size, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read sizes folder: %w", err)
	}
	sizes := []Size{}
	for _, e := range entries { // ReadDir sorts by name
		if !e.Type().IsRegular() {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return nil, fmt.Errorf("size of %s: %w", filepath.Join(dir, e.Name()), err)
		}
		sizes = append(sizes, Size{Name: e.Name(), Bytes: info.Size(), MiB: float64(info.Size()) / (1 << 20)})
	}
	return sizes, nil
}
