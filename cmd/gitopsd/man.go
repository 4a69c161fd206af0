//go:build man

// Only a build with -tags man (make package) has `gitopsd man`: cobra's man
// page generator and Go's parser are no part of the daemon.

package main

import (
	"fmt"
	"go/doc/comment"
	"go/parser"
	"go/token"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func init() { packagerCmds = append(packagerCmds, newManCmd) }

// newManCmd writes the man pages of every command into a folder; the
// packages ship them (make package). Each page is the command's Long
// description, flags and Example, as --help shows them. With --config-doc
// (internal/config/doc.go), gitopsd-run(1) also carries the configuration
// reference, the page the packaged config points at. Hidden: it is for
// packagers.
func newManCmd() *cobra.Command {
	var configDoc string
	cmd := &cobra.Command{
		Use:    "man DIR",
		Short:  "Write man pages for every command into DIR",
		Hidden: true,
		Args:   args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			root := cmd.Root()
			if configDoc != "" {
				ref, err := configReference(configDoc)
				if err != nil {
					return err
				}
				run, _, err := root.Find([]string{"run"})
				if err != nil || run == root {
					return fmt.Errorf("man pages: no run command to carry the configuration reference")
				}
				// A level-1 heading in Long becomes a section of its own.
				run.Long = longOrShort(run) + "\n\n# CONFIGURATION\n\n" +
					"The daemon's configuration file: every key, its default and its environment variable.\n\n" + ref
			}
			if err := os.MkdirAll(a[0], 0o755); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			root.DisableAutoGenTag = true // reproducible pages; the date follows SOURCE_DATE_EPOCH
			header := &doc.GenManHeader{Title: "GITOPSD", Section: "1", Source: "gitopsd " + version, Manual: "gitopsd manual"}
			if err := doc.GenManTree(root, header, a[0]); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&configDoc, "config-doc", "", "Go file whose package comment is the configuration reference (internal/config/doc.go)")
	return cmd
}

// configReference renders the package comment of a Go file (the key
// reference of internal/config) as the Markdown that cobra's man pages are
// written in: its headings become subsections, its indented key listing a
// preformatted block.
func configReference(path string) (string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		return "", fmt.Errorf("configuration reference %s: %w", path, err)
	}
	if f.Doc == nil || strings.TrimSpace(f.Doc.Text()) == "" {
		return "", fmt.Errorf("configuration reference %s: the file has no package comment", path)
	}
	var p comment.Parser
	d := p.Parse(f.Doc.Text())
	// "Package config is ..." speaks to Go programmers; the page starts at
	// the first heading.
	for len(d.Content) > 0 {
		if _, ok := d.Content[0].(*comment.Heading); ok {
			break
		}
		d.Content = d.Content[1:]
	}
	if len(d.Content) == 0 {
		return "", fmt.Errorf("configuration reference %s: the package comment has no heading", path)
	}
	pr := &comment.Printer{HeadingLevel: 2, HeadingID: func(*comment.Heading) string { return "" }}
	return string(pr.Markdown(d)), nil
}
