package client

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/pion/logging"
)

// NewPionLoggerFactory bridges pion's logging to log at warn level and
// above: pion's Warn and Error calls go to log with the pion scope under the
// key "pion"; Trace, Debug and Info are dropped, since pion logs every state
// change at Info.
func NewPionLoggerFactory(log *slog.Logger) logging.LoggerFactory {
	return pionLoggerFactory{log: log}
}

type pionLoggerFactory struct{ log *slog.Logger }

func (f pionLoggerFactory) NewLogger(scope string) logging.LeveledLogger {
	return pionLogger{log: f.log.With("pion", scope)}
}

type pionLogger struct{ log *slog.Logger }

var _ logging.LeveledLogger = pionLogger{}

func (pionLogger) Trace(string)          {}
func (pionLogger) Tracef(string, ...any) {}
func (pionLogger) Debug(string)          {}
func (pionLogger) Debugf(string, ...any) {}
func (pionLogger) Info(string)           {}
func (pionLogger) Infof(string, ...any)  {}

// routine lists pion warnings that every normal connection produces (a
// connectivity check tried before the remote candidates came, a DTLS record
// racing its endpoint's creation, sockets read or written while a closing
// connection shuts them, a TURN/TCP server address resolved for the other
// IP family, which ICE tries too); they go to debug, not warn.
var routine = []string{
	"without candidate pairs",
	"no endpoint for packet",
	"use of closed network connection",
	"conn is closed",
	"no suitable address found",
}

func (l pionLogger) Warn(msg string) { l.warn(msg) }

func (l pionLogger) Warnf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelWarn) {
		l.warn(fmt.Sprintf(format, args...))
	}
}

func (l pionLogger) warn(msg string) {
	level := slog.LevelWarn
	for _, r := range routine {
		if strings.Contains(msg, r) {
			level = slog.LevelDebug
			break
		}
	}
	l.log.Log(context.Background(), level, msg)
}

func (l pionLogger) Error(msg string) { l.log.Log(context.Background(), slog.LevelError, msg) }

func (l pionLogger) Errorf(format string, args ...any) {
	if l.log.Enabled(context.Background(), slog.LevelError) {
		l.log.Log(context.Background(), slog.LevelError, fmt.Sprintf(format, args...))
	}
}
