package engine

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/moby/moby/client"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Labels of the images gitopsd builds: the digest of what an image was
// built from (BuildDigest), and which gitopsd built it (an ID of its state
// folder), so one never takes another's images for its own.
const (
	LabelBuildDigest = "io.gitopsd.build-digest"
	LabelBuiltBy     = "io.gitopsd.built-by"
)

// BuildSpec is a compose build: section resolved against a checkout: what
// the engine's builder is given.
type BuildSpec struct {
	ContextDir       string             // absolute folder on disk
	Dockerfile       string             // relative to ContextDir; "" is Dockerfile
	DockerfileInline string             // the Dockerfile itself, instead of a file
	Args             map[string]*string `json:",omitempty"`
	Target           string             `json:",omitempty"`
	Labels           map[string]string  `json:",omitempty"`
	ExtraHosts       []string           `json:",omitempty"`
	Network          string             `json:",omitempty"`
	ShmSize          int64              `json:",omitempty"`
	NoCache          bool               `json:",omitempty"`
	Pull             bool               `json:",omitempty"`
	Platform         string             `json:",omitempty"`
}

// inlineDockerfile is the name a dockerfile_inline is sent under: a name no
// context file is likely to have, as the builder reads it from the context.
const inlineDockerfile = ".gitopsd.inline.Dockerfile"

// dockerfile is the Dockerfile's path in the context, slash-separated.
func (s BuildSpec) dockerfile() string {
	switch {
	case s.DockerfileInline != "":
		return inlineDockerfile
	case s.Dockerfile == "":
		return "Dockerfile"
	}
	return filepath.ToSlash(filepath.Clean(s.Dockerfile))
}

// ContextTooBigError is a build context over the host's limit.
type ContextTooBigError struct {
	Dir   string
	Limit int64
}

func (e *ContextTooBigError) Error() string {
	return fmt.Sprintf("build context %s holds more than %d bytes (images.max_build_context)", e.Dir, e.Limit)
}

// BuildError is a build the builder refused or failed, with the last lines
// it printed.
type BuildError struct {
	Msg   string
	Lines []string
}

func (e *BuildError) Error() string {
	if len(e.Lines) == 0 {
		return "build failed: " + e.Msg
	}
	return "build failed: " + e.Msg + "\nlast lines of the builder:\n" + strings.Join(e.Lines, "\n")
}

// contextFile is one file sent to the builder.
type contextFile struct {
	rel  string // slash-separated, relative to the context
	abs  string
	info fs.FileInfo
}

// contextFiles lists what `docker build` sends from spec's context: every
// file not excluded by the context's .dockerignore, with the Dockerfile
// and .dockerignore always included, in lexical order, refusing a context
// over limit bytes (0: no limit).
func contextFiles(spec BuildSpec, limit int64) ([]contextFile, error) {
	root := spec.ContextDir
	patterns, err := readDockerignore(root)
	if err != nil {
		return nil, err
	}
	if len(patterns) > 0 {
		// As the docker CLI does: the builder needs these whatever the
		// patterns say.
		patterns = append(patterns, "!.dockerignore", "!"+spec.dockerfile())
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(root, ".dockerignore"), err)
	}
	var files []contextFile
	var total int64
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("read build context: %w", err)
		}
		if p == root {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		skip, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return fmt.Errorf("match %s against .dockerignore: %w", rel, err)
		}
		if skip {
			if d.IsDir() && !pm.Exclusions() {
				return filepath.SkipDir // nothing under it can be let back in
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("read build context: %w", err)
		}
		if info.Mode().IsRegular() {
			total += info.Size()
			if limit > 0 && total > limit {
				return &ContextTooBigError{Dir: root, Limit: limit}
			}
		}
		files = append(files, contextFile{rel: rel, abs: p, info: info})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return files, nil
}

func readDockerignore(root string) ([]string, error) {
	f, err := os.Open(filepath.Join(root, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read .dockerignore: %w", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", filepath.Join(root, ".dockerignore"), err)
	}
	return patterns, nil
}

// BuildDigest is the digest of what a build of spec would be given: the
// names, modes and contents of the context's files after .dockerignore, and
// the build configuration. Equal digests build equal images, so an image
// built from a digest need not be built again.
func BuildDigest(spec BuildSpec, limit int64) (string, error) {
	files, err := contextFiles(spec, limit)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	cfg := spec
	cfg.ContextDir = "" // where the checkout lives is not what is built
	if err := json.NewEncoder(h).Encode(cfg); err != nil {
		return "", fmt.Errorf("digest build config: %w", err)
	}
	buf := make([]byte, 64<<10) // one for every file: a context has thousands
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%o\x00", f.rel, f.info.Mode())
		switch {
		case f.info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(f.abs)
			if err != nil {
				return "", fmt.Errorf("read build context: %w", err)
			}
			io.WriteString(h, target)
		case f.info.Mode().IsRegular():
			if err := hashFile(h, f.abs, buf); err != nil {
				return "", err
			}
		}
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, p string, buf []byte) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("read build context: %w", err)
	}
	defer f.Close()
	// Hiding the file's WriteTo makes CopyBuffer use buf: WriteTo would
	// fall back to a fresh 32 KiB buffer for every file.
	if _, err := io.CopyBuffer(w, struct{ io.Reader }{f}, buf); err != nil {
		return fmt.Errorf("read build context %s: %w", p, err)
	}
	return nil
}

// writeContext writes the tar stream of a build context: files as listed,
// plus the inline Dockerfile if any. Times are zeroed so the same files
// give the same stream.
func writeContext(w io.Writer, spec BuildSpec, files []contextFile) error {
	tw := tar.NewWriter(w)
	for _, f := range files {
		link := ""
		if f.info.Mode()&fs.ModeSymlink != 0 {
			var err error
			if link, err = os.Readlink(f.abs); err != nil {
				return fmt.Errorf("read build context: %w", err)
			}
		}
		hdr, err := tar.FileInfoHeader(f.info, link)
		if err != nil {
			return fmt.Errorf("build context %s: %w", f.rel, err)
		}
		hdr.Name = f.rel
		if f.info.IsDir() {
			hdr.Name += "/"
		}
		hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = time.Unix(0, 0), time.Time{}, time.Time{}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write build context: %w", err)
		}
		if f.info.Mode().IsRegular() {
			if err := copyFile(tw, f.abs); err != nil {
				return err
			}
		}
	}
	if spec.DockerfileInline != "" {
		hdr := &tar.Header{Name: inlineDockerfile, Mode: 0o644, Size: int64(len(spec.DockerfileInline)), ModTime: time.Unix(0, 0)}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("write build context: %w", err)
		}
		if _, err := io.WriteString(tw, spec.DockerfileInline); err != nil {
			return fmt.Errorf("write build context: %w", err)
		}
	}
	return tw.Close()
}

func copyFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("read build context: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(w, f); err != nil {
		return fmt.Errorf("write build context %s: %w", p, err)
	}
	return nil
}

// builderLines is how many of the builder's last lines a failed build keeps.
const builderLines = 12

// Build builds spec with the engine's builder, tags the image with tags and
// labels it with digest and owner (LabelBuiltBy), and returns its ID.
// Intermediate containers are removed, also when the build fails; a
// failure is a *BuildError.
func (e *Engine) Build(ctx context.Context, spec BuildSpec, digest, owner string, tags []string, limit int64) (string, error) {
	files, err := contextFiles(spec, limit)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeContext(pw, spec, files)) }()
	defer pr.Close()

	labels := map[string]string{}
	for k, v := range spec.Labels {
		labels[k] = v
	}
	labels[LabelBuildDigest] = digest
	if owner != "" {
		labels[LabelBuiltBy] = owner
	}
	opts := client.ImageBuildOptions{
		Tags:        tags,
		Dockerfile:  spec.dockerfile(),
		BuildArgs:   spec.Args,
		Target:      spec.Target,
		Labels:      labels,
		ExtraHosts:  spec.ExtraHosts,
		NetworkMode: spec.Network,
		ShmSize:     spec.ShmSize,
		NoCache:     spec.NoCache,
		PullParent:  spec.Pull,
		Remove:      true,
		ForceRemove: true,
	}
	res, err := e.cli.ImageBuild(ctx, pr, opts)
	if err != nil {
		return "", &BuildError{Msg: err.Error()}
	}
	defer res.Body.Close()
	id, err := readBuildOutput(res.Body)
	if err != nil {
		return "", err
	}
	if id == "" && len(tags) > 0 {
		// Older builders print "Successfully built <id>" only; the tag
		// says it just as well.
		img, err := e.cli.ImageInspect(ctx, tags[0])
		if err != nil {
			return "", fmt.Errorf("inspect built image %s: %w", tags[0], err)
		}
		id = img.ID
	}
	return id, nil
}

// buildMessage is one line of the build API's JSON stream.
type buildMessage struct {
	Stream      string `json:"stream"`
	Status      string `json:"status"`
	Error       string `json:"error"`
	ErrorDetail *struct {
		Message string `json:"message"`
	} `json:"errorDetail"`
	Aux json.RawMessage `json:"aux"`
}

// readBuildOutput follows the build's output to its end and returns the
// built image's ID (from the aux message) or the failure with the last
// lines printed.
func readBuildOutput(r io.Reader) (string, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	var last []string
	keep := func(text string) {
		for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
			if line = strings.TrimRight(line, "\r "); line == "" {
				continue
			}
			last = append(last, line)
			if len(last) > builderLines {
				last = last[1:]
			}
		}
	}
	var id string
	for {
		var m buildMessage
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return "", &BuildError{Msg: fmt.Sprintf("read builder output: %v", err), Lines: last}
		}
		if m.Error != "" || m.ErrorDetail != nil {
			msg := m.Error
			if m.ErrorDetail != nil && m.ErrorDetail.Message != "" {
				msg = m.ErrorDetail.Message
			}
			return "", &BuildError{Msg: msg, Lines: last}
		}
		if len(m.Aux) > 0 {
			var aux struct{ ID string }
			if json.Unmarshal(m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		keep(m.Stream)
	}
	return id, nil
}

// TagImage points tag at the image id (a no-op when it already does).
func (e *Engine) TagImage(ctx context.Context, id, tag string) error {
	if cur, err := e.cli.ImageInspect(ctx, tag); err == nil && cur.ID == id {
		return nil
	}
	if _, err := e.cli.ImageTag(ctx, client.ImageTagOptions{Source: id, Target: tag}); err != nil {
		return fmt.Errorf("tag image %s as %s: %w", ids.Short(id), tag, err)
	}
	return nil
}

// ContainerImages is the set of image IDs that any container of the host
// uses, running or not, gitopsd's or not.
func (e *Engine) ContainerImages(ctx context.Context) (map[string]bool, error) {
	res, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true})
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	used := map[string]bool{}
	for _, c := range res.Items {
		used[c.ImageID] = true
	}
	return used, nil
}

// BuiltImages lists the images owner built (LabelBuiltBy), by ID with
// their first name ("" when untagged).
func (e *Engine) BuiltImages(ctx context.Context, owner string) (map[string]string, error) {
	res, err := e.cli.ImageList(ctx, client.ImageListOptions{Filters: client.Filters{}.Add("label", LabelBuiltBy+"="+owner)})
	if err != nil {
		return nil, fmt.Errorf("list built images: %w", err)
	}
	out := map[string]string{}
	for _, img := range res.Items {
		name := ""
		if len(img.RepoTags) > 0 && img.RepoTags[0] != "<none>:<none>" {
			name = img.RepoTags[0]
		}
		out[img.ID] = name
	}
	return out, nil
}

// ErrImageInUse is an image the engine would not remove: a container
// still uses it.
var ErrImageInUse = errors.New("image in use")

// RemoveImage removes an image and the names it has, never by force: an
// image a container uses stays (ErrImageInUse). An image already gone is
// not an error.
func (e *Engine) RemoveImage(ctx context.Context, id string) error {
	img, err := e.cli.ImageInspect(ctx, id)
	if cerrdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("inspect image %s: %w", ids.Short(id), err)
	}
	// Untag first: an image with several names is only removed by ID by
	// force, and force would also take it from under stopped containers.
	refs := append(append([]string{}, img.RepoTags...), id)
	for _, ref := range refs {
		_, err := e.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true})
		switch {
		case err == nil, cerrdefs.IsNotFound(err):
		case cerrdefs.IsConflict(err):
			return fmt.Errorf("remove image %s: %w: %v", ids.Short(id), ErrImageInUse, err)
		default:
			return fmt.Errorf("remove image %s (%s): %w", ids.Short(id), ref, err)
		}
	}
	return nil
}
