package agent

import "strings"

// levelWords maps the words log lines commonly use for their severity to the
// levels Herald's log entries carry (chatops' set: debug, info, warning,
// error, critical).
var levelWords = map[string]string{
	"trace": "debug", "debug": "debug", "dbg": "debug",
	"info": "info", "inf": "info", "notice": "info",
	"warn": "warning", "warning": "warning", "wrn": "warning",
	"error": "error", "err": "error", "eror": "error", "failed": "error", "failure": "error",
	"fatal": "critical", "panic": "critical", "crit": "critical", "critical": "critical",
	"emerg": "critical", "alert": "critical",
}

// guessScanBytes bounds how much of a line guessLevel reads: the level of a
// log line is near its start (after a timestamp at most).
const guessScanBytes = 160

// guessLevel guesses a line's level from the first level word in its first
// bytes ("2024-01-01 ERROR x", "level=warn", "[DEBUG]", "panic: ..."), and
// says "info" when there is none. The first word wins, so a message such as
// "INFO retrying after error" stays info.
func guessLevel(line string) string {
	if len(line) > guessScanBytes {
		line = line[:guessScanBytes]
	}
	for _, w := range strings.FieldsFunc(line, func(r rune) bool {
		return !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z')
	}) {
		if lvl, ok := levelWords[strings.ToLower(w)]; ok {
			return lvl
		}
	}
	return "info"
}
