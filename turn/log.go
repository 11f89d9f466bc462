package turn

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/pion/logging"
	"golang.org/x/time/rate"
)

// pionLogs bridges pion's LoggerFactory to slog. Only warnings and errors pass
// (pion logs every packet at debug and remote mistakes at info), and those
// through a rate limit: pion logs some per-packet failures as errors, and a
// client can provoke them.
type pionLogs struct {
	log   *slog.Logger
	limit *rate.Limiter
}

var _ logging.LoggerFactory = (*pionLogs)(nil)

func newPionLogs(log *slog.Logger) *pionLogs {
	return &pionLogs{log: log, limit: rate.NewLimiter(5, 20)}
}

// NewLogger implements logging.LoggerFactory.
func (f *pionLogs) NewLogger(scope string) logging.LeveledLogger {
	return &pionLogger{f: f, log: f.log.With("pion", scope)}
}

type pionLogger struct {
	f   *pionLogs
	log *slog.Logger
}

func (l *pionLogger) emit(level slog.Level, msg string) {
	if l.log.Enabled(context.Background(), level) && l.f.limit.Allow() {
		l.log.Log(context.Background(), level, msg)
	}
}

func (l *pionLogger) Trace(string)          {}
func (l *pionLogger) Tracef(string, ...any) {}
func (l *pionLogger) Debug(string)          {}
func (l *pionLogger) Debugf(string, ...any) {}
func (l *pionLogger) Info(string)           {}
func (l *pionLogger) Infof(string, ...any)  {}
func (l *pionLogger) Warn(msg string)       { l.emit(slog.LevelWarn, msg) }
func (l *pionLogger) Warnf(format string, args ...any) {
	l.emit(slog.LevelWarn, fmt.Sprintf(format, args...))
}
func (l *pionLogger) Error(msg string) { l.emit(slog.LevelError, msg) }
func (l *pionLogger) Errorf(format string, args ...any) {
	l.emit(slog.LevelError, fmt.Sprintf(format, args...))
}
