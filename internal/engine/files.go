package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// LabelFiles holds a keyed digest of the contents of a container's compose
// secrets and configs, so a change to one rolls the service (compose's
// config hash covers only where they go, not what they hold). It is keyed
// so that a short secret cannot be guessed from it.
const LabelFiles = "io.gitopsd.files"

// InjectedFile is a compose secret or config that is not a file on the
// host (environment: or content:, or a SOPS-encrypted file decrypted in
// memory): it is written into the container after create, before start,
// as compose does.
type InjectedFile struct {
	Path     string // absolute path in the container
	Content  []byte
	Mode     fs.FileMode
	UID, GID int
	SetOwner bool // uid or gid was given
}

// fileReference is one secret or config of a service, resolved.
type fileReference struct {
	kind     string // "secrets" or "configs"
	name     string // the top-level key
	target   string // absolute path in the container
	hostFile string // bind-mounted read-only when set
	content  []byte // injected when hostFile is ""
	ref      types.FileReferenceConfig
}

// fileReferences resolves the secrets and configs of svc as compose does
// without swarm: a file is bind-mounted read-only (secrets under
// /run/secrets/, configs under /), anything else is written into the
// container. External ones and drivers need swarm and are refused.
func fileReferences(project *types.Project, svc types.ServiceConfig) ([]fileReference, error) {
	var out []fileReference
	add := func(kind string, ref types.FileReferenceConfig, def types.FileObjectConfig, defined bool) error {
		key := fmt.Sprintf("%s.%s", kind, ref.Source)
		switch {
		case !defined:
			return fmt.Errorf("services.%s.%s: %s is not defined", svc.Name, kind, key)
		case bool(def.External):
			return fmt.Errorf("%s: external %s need swarm, which gitopsd does not use (use file:, environment: or content:)", key, kind)
		case def.Driver != "" || def.TemplateDriver != "":
			return fmt.Errorf("%s: driver and template_driver need swarm, which gitopsd does not use", key)
		}
		r := fileReference{kind: kind, name: ref.Source, target: fileTarget(kind, ref), ref: ref}
		switch {
		case def.Content != "":
			r.content = []byte(def.Content)
		case def.Environment != "":
			v, ok := project.Environment[def.Environment]
			if !ok {
				return fmt.Errorf("%s: environment variable %s is not set", key, def.Environment)
			}
			r.content = []byte(v)
		case def.File != "":
			r.hostFile = def.File
		default:
			return fmt.Errorf("%s: needs file:, environment: or content:", key)
		}
		out = append(out, r)
		return nil
	}
	for _, s := range svc.Secrets {
		def, ok := project.Secrets[s.Source]
		if err := add("secrets", types.FileReferenceConfig(s), types.FileObjectConfig(def), ok); err != nil {
			return nil, err
		}
	}
	for _, c := range svc.Configs {
		def, ok := project.Configs[c.Source]
		if err := add("configs", types.FileReferenceConfig(c), types.FileObjectConfig(def), ok); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// fileTarget is where compose puts a secret or config in the container.
func fileTarget(kind string, ref types.FileReferenceConfig) string {
	dir := "/"
	if kind == "secrets" {
		dir = "/run/secrets/"
	}
	switch {
	case ref.Target == "":
		return dir + ref.Source
	case strings.HasPrefix(ref.Target, "/"):
		return ref.Target
	}
	return dir + ref.Target
}

// fileMounts returns the read-only bind mounts of file-backed secrets and
// configs (skipping a target a volume takes, as compose does) and the
// files to write into the container. They are mounts, never Binds strings,
// with compose's options, so `docker inspect` cannot tell who made them.
func fileMounts(svc types.ServiceConfig, refs []fileReference) ([]mount.Mount, []InjectedFile, error) {
	taken := map[string]bool{}
	for _, v := range svc.Volumes {
		taken[v.Target] = true
	}
	var mounts []mount.Mount
	var files []InjectedFile
	for _, r := range refs {
		if taken[r.target] {
			continue
		}
		taken[r.target] = true
		if r.hostFile != "" {
			m := mount.Mount{Type: mount.TypeBind, Source: r.hostFile, Target: r.target, ReadOnly: true}
			if r.kind == "secrets" {
				m.BindOptions = &mount.BindOptions{CreateMountpoint: false}
			}
			mounts = append(mounts, m)
			continue
		}
		if svc.ReadOnly {
			return nil, nil, fmt.Errorf("%s.%s: cannot be written into read_only service %s: only file: can be used there", r.kind, r.name, svc.Name)
		}
		f := InjectedFile{Path: r.target, Content: r.content, Mode: 0o444}
		if r.ref.Mode != nil {
			f.Mode = fs.FileMode(*r.ref.Mode)
		}
		if r.ref.UID != "" || r.ref.GID != "" {
			f.SetOwner = true
			var err error
			if f.UID, err = atoiOrZero(r.ref.UID); err != nil {
				return nil, nil, fmt.Errorf("%s.%s uid: %w", r.kind, r.name, err)
			}
			if f.GID, err = atoiOrZero(r.ref.GID); err != nil {
				return nil, nil, fmt.Errorf("%s.%s gid: %w", r.kind, r.name, err)
			}
		}
		files = append(files, f)
	}
	return mounts, files, nil
}

func atoiOrZero(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	return strconv.Atoi(s)
}

// MaxFileObjectBytes bounds the host file of a secret or config (file:):
// FilesDigest refuses a bigger one rather than read it (the stack loader
// refuses it first, naming the file).
const MaxFileObjectBytes = vocab.MaxFileObjectBytes

// FilesDigest is the LabelFiles value of a service: an HMAC under key of
// the targets and contents of its secrets and configs, read from the host
// where they are files, as a stream: a file is never held in memory.
// "" when it has none.
func FilesDigest(project *types.Project, svc types.ServiceConfig, key []byte) (string, error) {
	refs, err := fileReferences(project, svc)
	if err != nil || len(refs) == 0 {
		return "", err
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].target < refs[j].target })
	mac := hmac.New(sha256.New, key)
	for _, r := range refs {
		if r.hostFile != "" {
			if err := hashHostFile(mac, r.target, r.hostFile); err != nil {
				return "", fmt.Errorf("%s.%s: %w", r.kind, r.name, err)
			}
			continue
		}
		fmt.Fprintf(mac, "%s\x00%d\x00", r.target, len(r.content))
		mac.Write(r.content)
	}
	return hex.EncodeToString(mac.Sum(nil)), nil
}

// hashHostFile writes target, the size of the host file p and its content to
// w, as FilesDigest always has for content in memory. p must be a regular
// file of at most MaxFileObjectBytes: a device such as /dev/zero would be
// read without end, and opening a FIFO would wait for a writer (it is
// opened without blocking, and then refused).
func hashHostFile(w io.Writer, target, p string) error {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return err
	case !st.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", p)
	case st.Size() > MaxFileObjectBytes:
		return fmt.Errorf("%s is %d bytes, over the limit of %d", p, st.Size(), MaxFileObjectBytes)
	}
	fmt.Fprintf(w, "%s\x00%d\x00", target, st.Size())
	n, err := io.Copy(w, io.LimitReader(f, st.Size()+1))
	if err != nil {
		return fmt.Errorf("read %s: %w", p, err)
	}
	if n != st.Size() {
		return fmt.Errorf("%s changed while it was read", p)
	}
	return nil
}

// injectFiles writes files into a created container, as one tar at /.
func (e *Engine) injectFiles(ctx context.Context, id string, files []InjectedFile) error {
	if len(files) == 0 {
		return nil
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	owned := false
	for _, f := range files {
		hdr := &tar.Header{
			Name:    strings.TrimPrefix(f.Path, "/"),
			Mode:    int64(f.Mode.Perm()),
			Size:    int64(len(f.Content)),
			ModTime: time.Now(),
			Uid:     f.UID,
			Gid:     f.GID,
		}
		owned = owned || f.SetOwner
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Content); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if _, err := e.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: &buf, CopyUIDGID: owned}); err != nil {
		return fmt.Errorf("write secrets and configs into container %s: %w", ids.Short(id), err)
	}
	return nil
}
