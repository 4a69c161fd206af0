package sync

import (
	"errors"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"
)

// readOnlyCheckoutBinds returns svc with every bind whose source lies in
// the stack's folder (stackDir, resolved against workingDir when relative)
// or under one of checkoutDirs mounted read-only, whatever the file says.
//
// Why: the stack's folder is a checkout of the repository, which stacks
// are loaded from. A container that could write there (`.:/repo`) could
// rewrite its own compose file, and the next load would apply the change
// under the signed revision's name.
//
// The caller hashes the service as written, as docker compose does, so
// `docker compose up -d` over gitopsd's containers still changes nothing;
// a container compose made with such a bind writable differs from the spec
// in its mounts and is recreated read-only.
func readOnlyCheckoutBinds(svc types.ServiceConfig, workingDir, stackDir string, checkoutDirs []string) types.ServiceConfig {
	protected := append([]string{stackDir}, checkoutDirs...)
	var vols []types.ServiceVolumeConfig
	for i, v := range svc.Volumes {
		if v.Type != types.VolumeTypeBind || v.ReadOnly || v.Source == "" {
			continue
		}
		source := v.Source
		if !filepath.IsAbs(source) {
			source = filepath.Join(workingDir, source)
		}
		if !insideAny(source, protected) {
			continue
		}
		if vols == nil {
			vols = slices.Clone(svc.Volumes) // the project's own slice stays as loaded
		}
		vols[i].ReadOnly = true
	}
	if vols != nil {
		svc.Volumes = vols
	}
	return svc
}

// insideAny says whether p is one of dirs or below one, as written or with
// symlinks resolved on both sides: the stack's folder is reached through
// the live view's link to a checkout.
func insideAny(p string, dirs []string) bool {
	real := resolveExisting(p)
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if within(p, d) || within(real, resolveExisting(d)) {
			return true
		}
	}
	return false
}

func within(p, dir string) bool {
	p, dir = filepath.Clean(p), filepath.Clean(dir)
	return p == dir || strings.HasPrefix(p, strings.TrimSuffix(dir, string(filepath.Separator))+string(filepath.Separator))
}

// resolveExisting resolves the symlinks of the longest part of p that
// exists: a bind's source may not exist yet (Docker creates it).
func resolveExisting(p string) string {
	p = filepath.Clean(p)
	var rest []string
	for {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return p
		}
		parent := filepath.Dir(p)
		if parent == p {
			return filepath.Join(append([]string{p}, rest...)...)
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}
