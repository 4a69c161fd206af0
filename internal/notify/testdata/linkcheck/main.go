// Command linkcheck links internal/notify alone, for TestNoTemplateExecutor.
package main

import (
	"context"
	"os"

	"github.com/gitopsd/gitopsd/internal/notify"
)

func main() {
	n, err := notify.New(context.Background(), os.Getenv("HOOK"), os.Args[1:], "h", nil)
	if err != nil {
		panic(err)
	}
	n.Send(notify.Drift, "s", "d")
}
