package main

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestReadSizes(t *testing.T) {
	dir := t.TempDir()
	files := map[string]int64{
		"gitopsd-linux-amd64": 12 << 20,
		"gitopsd-linux-arm64": 11<<20 + 512<<10,
		"gitopsd-linux-armv7": 10 << 20,
	}
	for name, size := range files {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(size); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if err := os.Mkdir(filepath.Join(dir, "pkg"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("gitopsd-linux-amd64", filepath.Join(dir, "gitopsd")); err != nil {
		t.Fatal(err)
	}

	got, err := ReadSizes(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []Size{
		{"gitopsd-linux-amd64", 12 << 20, 12},
		{"gitopsd-linux-arm64", 11<<20 + 512<<10, 11.5},
		{"gitopsd-linux-armv7", 10 << 20, 10},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sizes = %+v, want %+v (no folder, no link)", got, want)
	}

	if _, err := ReadSizes(filepath.Join(dir, "absent")); err == nil {
		t.Error("no error for a missing folder")
	}
}
