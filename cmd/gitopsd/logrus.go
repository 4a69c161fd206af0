package main

import (
	"context"
	"io"
	"log/slog"

	"github.com/sirupsen/logrus"
)

// routeComposeLogs sends what compose-go logs through logrus (warnings such
// as "the X variable is not set") to log, so they reach the daemon's
// structured log instead of stderr in another format.
func routeComposeLogs(log *slog.Logger) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.WarnLevel)
	logrus.AddHook(slogHook{log: log})
}

type slogHook struct{ log *slog.Logger }

func (slogHook) Levels() []logrus.Level {
	return []logrus.Level{logrus.PanicLevel, logrus.FatalLevel, logrus.ErrorLevel, logrus.WarnLevel}
}

func (h slogHook) Fire(e *logrus.Entry) error {
	level := slog.LevelWarn
	if e.Level <= logrus.ErrorLevel {
		level = slog.LevelError
	}
	h.log.Log(context.Background(), level, e.Message, "from", "compose-go")
	return nil
}
