package engine

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// Volumes are read and written without pulling any image and without
// running anything: through a helper container that is created, never
// started, from an image gitopsd imports itself (one empty folder), with
// the volume mounted at VolumeMount, and the container archive endpoints
// (GET and PUT /containers/{id}/archive).
const (
	// HelperImage is gitopsd's own helper image; it carries LabelHelper.
	HelperImage = "gitopsd-helper:1"
	// LabelHelper marks helper images and containers (value: what for).
	LabelHelper = "io.gitopsd.helper"
	// VolumeMount is where a helper container mounts the volume; the tar
	// streams of ReadVolume and WriteVolume name entries under "v/".
	VolumeMount = "/v"
)

// ensureHelperImage imports the helper image when it is missing.
func (e *Engine) ensureHelperImage(ctx context.Context) error {
	if _, err := e.cli.ImageInspect(ctx, HelperImage); err == nil {
		return nil
	} else if !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("inspect helper image: %w", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "v/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return ImportImage(ctx, e.cli, &buf, HelperImage, []string{`CMD ["/none"]`, "LABEL " + LabelHelper + "=volume-io"})
}

// ImportImage imports a root filesystem tar as a one-layer image tagged
// ref, with Dockerfile-like changes (CMD, LABEL, ...): an image made
// without pulling and without a builder. It takes the client so that the
// tests' own image builder uses it too.
func ImportImage(ctx context.Context, cli *client.Client, rootfs io.Reader, ref string, changes []string) error {
	res, err := cli.ImageImport(ctx, client.ImageImportSource{Source: rootfs, SourceName: "-"}, ref, client.ImageImportOptions{Changes: changes})
	if err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	defer res.Close()
	// The HTTP status is 200 even when the import fails: the failure is
	// only a message in the stream.
	dec := json.NewDecoder(res)
	for {
		var msg jsonstream.Message
		if err := dec.Decode(&msg); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("import image %s: read output: %w", ref, err)
		}
		if msg.Error != nil && msg.Error.Message != "" {
			return fmt.Errorf("import image %s: %s", ref, msg.Error.Message)
		}
	}
}

// helper creates (does not start) a helper container with volume mounted.
func (e *Engine) helper(ctx context.Context, volume string, readOnly bool, labels map[string]string) (string, error) {
	if err := e.ensureHelperImage(ctx); err != nil {
		return "", err
	}
	l := map[string]string{LabelHelper: "volume-io"}
	for k, v := range labels {
		l[k] = v
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	// Not cancelled halfway: the engine would finish a create its client
	// gave up on, and nobody would know the container to remove it.
	res, err := e.cli.ContainerCreate(context.WithoutCancel(ctx), client.ContainerCreateOptions{
		Config: &container.Config{Image: HelperImage, Labels: l, NetworkDisabled: true},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: volume, Target: VolumeMount, ReadOnly: readOnly}},
		},
	})
	if err != nil {
		return "", fmt.Errorf("create helper container for volume %s: %w", volume, err)
	}
	return res.ID, nil
}

// ReadVolume streams a volume's content as a tar (entries under "v/"). The
// helper container goes when the stream is closed.
func (e *Engine) ReadVolume(ctx context.Context, volume string, labels map[string]string) (io.ReadCloser, error) {
	id, err := e.helper(ctx, volume, true, labels)
	if err != nil {
		return nil, err
	}
	res, err := e.cli.CopyFromContainer(ctx, id, client.CopyFromContainerOptions{SourcePath: VolumeMount})
	if err != nil {
		_ = e.RemoveContainer(context.WithoutCancel(ctx), id)
		return nil, fmt.Errorf("read volume %s: %w", volume, err)
	}
	return &helperStream{ReadCloser: res.Content, remove: func() error { return e.RemoveContainer(context.WithoutCancel(ctx), id) }}, nil
}

type helperStream struct {
	io.ReadCloser
	remove func() error
}

func (s *helperStream) Close() error { return errors.Join(s.ReadCloser.Close(), s.remove()) }

// WriteVolume extracts a tar stream (entries under "v/") into a volume,
// keeping owners, modes and links as the tar says.
func (e *Engine) WriteVolume(ctx context.Context, volume string, tarStream io.Reader, labels map[string]string) error {
	id, err := e.helper(ctx, volume, false, labels)
	if err != nil {
		return err
	}
	defer func() { _ = e.RemoveContainer(context.WithoutCancel(ctx), id) }()
	if _, err := e.cli.CopyToContainer(ctx, id, client.CopyToContainerOptions{DestinationPath: "/", Content: tarStream, CopyUIDGID: true}); err != nil {
		return fmt.Errorf("write volume %s: %w", volume, err)
	}
	return nil
}

// EmptyVolume removes everything inside a volume, keeping the volume. The
// archive endpoints cannot delete, so this goes through the local driver's
// mountpoint on this host (gitopsd runs as root beside the engine); other
// drivers are refused.
func (e *Engine) EmptyVolume(ctx context.Context, volume string) error {
	res, err := e.cli.VolumeInspect(ctx, volume, client.VolumeInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect volume %s: %w", volume, err)
	}
	v := res.Volume
	if v.Driver != "local" || v.Mountpoint == "" || len(v.Options) > 0 {
		return fmt.Errorf("empty volume %s: only plain local volumes can be emptied in place (driver %q); remove and recreate it, then restore", volume, v.Driver)
	}
	entries, err := os.ReadDir(v.Mountpoint)
	if err != nil {
		return fmt.Errorf("empty volume %s: %w (gitopsd must run as root on the engine's host)", volume, err)
	}
	for _, en := range entries {
		if err := os.RemoveAll(filepath.Join(v.Mountpoint, en.Name())); err != nil {
			return fmt.Errorf("empty volume %s: %w", volume, err)
		}
	}
	return nil
}

// CreateScratchVolume creates a throwaway volume for a restore test.
func (e *Engine) CreateScratchVolume(ctx context.Context, name string, labels map[string]string) error {
	l := map[string]string{LabelHelper: "scratch"}
	for k, v := range labels {
		l[k] = v
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := e.cli.VolumeCreate(context.WithoutCancel(ctx), client.VolumeCreateOptions{Name: name, Labels: l}); err != nil {
		return fmt.Errorf("create scratch volume %s: %w", name, err)
	}
	return nil
}

// RemoveVolume removes a volume; a missing one is no error.
func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	if _, err := e.cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// RemoveHelpers removes the helper containers and scratch volumes that
// carry label (key=value): what a crash or a cut-off job left behind.
func (e *Engine) RemoveHelpers(ctx context.Context, label string) error {
	f := client.Filters{}.Add("label", LabelHelper).Add("label", label)
	ctrs, err := e.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return fmt.Errorf("list helper containers: %w", err)
	}
	var errs []error
	for _, c := range ctrs.Items {
		errs = append(errs, e.RemoveContainer(ctx, c.ID))
	}
	vols, err := e.cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list scratch volumes: %w", err))...)
	}
	for _, v := range vols.Items {
		errs = append(errs, e.RemoveVolume(ctx, v.Name))
	}
	return errors.Join(errs...)
}
