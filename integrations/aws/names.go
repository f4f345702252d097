package awsprov

import (
	"strings"
	"time"

	"github.com/accessbroker/accessbroker/grants"
)

// AWS limits for AssumeRole parameters.
const (
	// MinSessionDuration is STS's shortest DurationSeconds.
	MinSessionDuration = 900 * time.Second
	// maxNameLen is the longest RoleSessionName and SourceIdentity.
	maxNameLen = 64
	// maxConsoleSession is the longest console session the federation endpoint gives.
	maxConsoleSession = 12 * time.Hour
)

// sanitize keeps the characters AWS allows in RoleSessionName and SourceIdentity
// ([\w+=,.@-], \w being ASCII letters, digits and underscore) and replaces any other with '-'.
func sanitize(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', strings.ContainsRune("_+=,.@-", r):
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	return b.String()
}

// personLabel is the person part of names: the email, else the Slack user id, else the
// GitHub login.
func personLabel(p grants.Person) string {
	if l := p.Label(); l != "" {
		return l
	}
	return "unknown"
}

// SessionName is the RoleSessionName for a grant: "<person>-<grant id>", at most 64
// characters of [\w+=,.@-]. The grant id is kept whole at the end (it makes the name unique
// and lets Revoke recompute the name from the grant alone); the person part is truncated.
func SessionName(p grants.Person, grantID string) string {
	id := sanitize(grantID)
	if len(id) > maxNameLen-2 {
		id = id[len(id)-(maxNameLen-2):]
	}
	room := maxNameLen - len(id) - 1
	person := sanitize(personLabel(p))
	if len(person) > room {
		person = person[:room]
	}
	return person + "-" + id
}

// SourceIdentity is the immutable SourceIdentity set on the session: the person's email (or
// other label), sanitized and cut to 64 characters. It is "" when nothing usable remains
// (AWS needs at least 2 characters and refuses an "aws:" prefix, which sanitizing already
// turns into "aws-").
func SourceIdentity(p grants.Person) string {
	s := sanitize(p.Label())
	if len(s) > maxNameLen {
		s = s[:maxNameLen]
	}
	if len(s) < 2 {
		return ""
	}
	return s
}

// SessionDuration is the DurationSeconds to ask for: the time left until the grant expires,
// rounded up to whole seconds, at least STS's 900 s minimum (the revocation deny covers the
// extra minutes), and at most limit (the role's MaxSessionDuration, or a smaller configured
// cap). capped reports that the credential will expire before the grant does.
func SessionDuration(now, expires time.Time, limit time.Duration) (d time.Duration, capped bool) {
	d = expires.Sub(now)
	if r := d % time.Second; r != 0 {
		d += time.Second - r
	}
	if d < MinSessionDuration {
		d = MinSessionDuration
	}
	if limit >= MinSessionDuration && d > limit {
		return limit.Truncate(time.Second), true
	}
	return d, false
}
