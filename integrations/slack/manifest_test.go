package slack

import (
	"net/url"
	"os"
	"slices"
	"testing"

	slackgo "github.com/slack-go/slack"
	"gopkg.in/yaml.v3"
)

// TestAppManifest keeps the repository's Slack app manifest in step with the handlers: the
// slash command and interactivity URLs point at the paths served here, and every scope the
// code needs is requested (and nothing more).
func TestAppManifest(t *testing.T) {
	raw, err := os.ReadFile("../../slack-app-manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m slackgo.Manifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("manifest is not valid YAML for slack-go's Manifest: %v", err)
	}
	if len(m.Features.SlashCommands) != 1 {
		t.Fatalf("slash commands = %+v", m.Features.SlashCommands)
	}
	sc := m.Features.SlashCommands[0]
	if sc.Command != "/access" || pathOf(t, sc.Url) != CommandsPath || sc.ShouldEscape {
		t.Errorf("slash command = %+v, want /access at %s without escaping", sc, CommandsPath)
	}
	if m.Settings.Interactivity == nil || !m.Settings.Interactivity.IsEnabled || pathOf(t, m.Settings.Interactivity.RequestUrl) != InteractionsPath {
		t.Errorf("interactivity = %+v, want enabled at %s", m.Settings.Interactivity, InteractionsPath)
	}
	want := []string{"chat:write", "commands", "im:write", "usergroups:read", "users:read", "users:read.email"}
	got := slices.Clone(m.OAuthConfig.Scopes.Bot)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("bot scopes = %v, want exactly %v", got, want)
	}
	if len(m.Display.LongDescription) < 175 {
		t.Errorf("long_description has %d characters; Slack requires at least 175", len(m.Display.LongDescription))
	}
}

func pathOf(t *testing.T, s string) string {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" {
		t.Fatalf("URL %q: want https", s)
	}
	return u.Path
}
