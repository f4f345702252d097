package slack

import (
	"errors"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	slackfixtures "github.com/accessbroker/accessbroker/fixtures/slack"
)

func formPayload(json []byte) []byte {
	return []byte(url.Values{"payload": {string(json)}}.Encode())
}

func TestDecodeInteractionFixtures(t *testing.T) {
	t.Parallel()
	got, err := DecodeInteraction(formPayload(slackfixtures.Read("block-actions.json")))
	if err != nil {
		t.Fatal(err)
	}
	want := Interaction{
		Type: "block_actions", TeamID: "T9TK3CUKW", UserID: "UA8RXUSPL", ActionID: "WaXA", Value: "click_me_123",
		ResponseURL: "https://hooks.slack.com/actions/AABA1ABCD/1232321423432/D09sSasdasdAS9091209",
		TriggerID:   "12321423423.333649436676.d8c1bb837935619ccad0f624c448ffb3", ChannelID: "CBR2V3XEX", MessageTS: "1548261231.000200",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("block_actions (-want +got):\n%s", diff)
	}
	vs, err := DecodeInteraction(formPayload(slackfixtures.Read("view-submission.json")))
	if err != nil || vs.Type != "view_submission" || vs.UserID != "U1234567" || vs.ActionID != "" {
		t.Errorf("view_submission = %+v, %v", vs, err)
	}
}

func TestDecodeInteractionRejects(t *testing.T) {
	t.Parallel()
	for name, body := range map[string][]byte{
		"not a form":       []byte("%zz"),
		"no payload":       []byte("token=abc"),
		"not json":         formPayload([]byte("{")),
		"no type":          formPayload([]byte(`{"user":{"id":"U1"}}`)),
		"no actions":       formPayload([]byte(`{"type":"block_actions","user":{"id":"U1"},"team":{"id":"T1"},"actions":[]}`)),
		"two actions":      formPayload([]byte(`{"type":"block_actions","user":{"id":"U1"},"team":{"id":"T1"},"actions":[{"type":"button","action_id":"a"},{"type":"button","action_id":"b"}]}`)),
		"no user":          formPayload([]byte(`{"type":"block_actions","team":{"id":"T1"},"actions":[{"type":"button","action_id":"a"}]}`)),
		"wrong field type": formPayload([]byte(`{"type":"block_actions","user":"U1"}`)),
	} {
		if _, err := DecodeInteraction(body); !errors.Is(err, ErrBadPayload) {
			t.Errorf("%s: err = %v, want ErrBadPayload", name, err)
		}
	}
}

// FuzzDecodeInteraction: the decoder never panics, and a block_actions it accepts always has
// a user, a team and one action.
func FuzzDecodeInteraction(f *testing.F) {
	for _, name := range []string{"block-actions.json", "view-submission.json"} {
		f.Add(formPayload(slackfixtures.Read(name)))
	}
	f.Add([]byte("payload=%7B%22type%22%3A%22block_actions%22%7D"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := DecodeInteraction(body)
		if err != nil {
			if !errors.Is(err, ErrBadPayload) {
				t.Fatalf("error %v is not ErrBadPayload", err)
			}
			return
		}
		if in.Type == "" {
			t.Fatal("accepted a payload without type")
		}
		if in.Type == "block_actions" && (in.UserID == "" || in.TeamID == "") {
			t.Fatalf("accepted block_actions without user or team: %+v", in)
		}
	})
}
