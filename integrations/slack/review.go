package slack

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	slackgo "github.com/slack-go/slack"

	"github.com/accessbroker/accessbroker/broker"
)

// Ids of the weekly review: the summary's button, its block, and the modal.
const (
	ActionReview   = "review_open"   // the summary's "Mark reviewed" button; value: the week id
	BlockReview    = "review"        // the actions block holding it
	CallbackReview = "review_submit" // the modal's callback_id; private_metadata: the week id
)

// Reviewer is the review use case the handler calls (*broker.Reviews implements it).
type Reviewer interface {
	Open(ctx context.Context, c broker.Caller, week string) (broker.ReviewCase, error)
	Record(ctx context.Context, c broker.Caller, week string, answers []broker.ReviewAnswer) error
}

// ReviewsAdapter adapts *broker.Reviews to Reviewer.
type ReviewsAdapter struct{ R *broker.Reviews }

// Open implements Reviewer.
func (a ReviewsAdapter) Open(ctx context.Context, c broker.Caller, week string) (broker.ReviewCase, error) {
	return a.R.Open(ctx, c, week)
}

// Record implements Reviewer.
func (a ReviewsAdapter) Record(ctx context.Context, c broker.Caller, week string, answers []broker.ReviewAnswer) error {
	_, err := a.R.Record(ctx, c, week, answers)
	return err
}

// ModalOpener opens a modal for a trigger id (views.open).
type ModalOpener interface {
	OpenModal(ctx context.Context, triggerID string, view slackgo.ModalViewRequest) error
}

// ModalClient opens modals with the bot's Web API client.
type ModalClient struct{ API *slackgo.Client }

// OpenModal implements ModalOpener with views.open.
func (m ModalClient) OpenModal(ctx context.Context, triggerID string, view slackgo.ModalViewRequest) error {
	if _, err := m.API.OpenViewContext(ctx, triggerID, view); err != nil {
		return fmt.Errorf("views.open: %w", err)
	}
	return nil
}

func foundBlock(i int) string { return "review_found_" + strconv.Itoa(i) }
func doneBlock(i int) string  { return "review_done_" + strconv.Itoa(i) }

// ReviewModal is the modal asking, for each item of rc, what was found and what was done.
func ReviewModal(rc broker.ReviewCase) slackgo.ModalViewRequest {
	pt := func(s string) *slackgo.TextBlockObject {
		return slackgo.NewTextBlockObject(slackgo.PlainTextType, s, false, false)
	}
	intro := fmt.Sprintf("Weekly report %s (%s – %s), SHA-256 %s.", Escape(rc.Week), rc.Since.UTC().Format("2 Jan 15:04"), rc.Until.UTC().Format("2 Jan 15:04 MST"), rc.ReportSHA256)
	blocks := []slackgo.Block{slackgo.NewSectionBlock(slackgo.NewTextBlockObject(slackgo.MarkdownType, intro, false, false), nil, nil)}
	if len(rc.Items) == 0 {
		blocks = append(blocks, slackgo.NewSectionBlock(pt("No anomalies this week: submitting records that the report was reviewed."), nil, nil))
	}
	for i, it := range rc.Items {
		label := sumCut(fmt.Sprintf("%d. %s", i+1, it.Label), SlackMaxHeaderText)
		blocks = append(blocks, slackgo.NewSectionBlock(slackgo.NewTextBlockObject(slackgo.MarkdownType, "*"+Escape(label)+"*", false, false), nil, nil))
		found := slackgo.NewPlainTextInputBlockElement(pt("What did you find?"), "found")
		found.Multiline, found.MaxLength = true, broker.MaxReviewNote
		done := slackgo.NewPlainTextInputBlockElement(pt("What was done?"), "done")
		done.Multiline, done.MaxLength = true, broker.MaxReviewNote
		blocks = append(blocks,
			slackgo.NewInputBlock(foundBlock(i), pt("Found"), nil, found),
			slackgo.NewInputBlock(doneBlock(i), pt("Done"), nil, done))
	}
	return slackgo.ModalViewRequest{
		Type: slackgo.VTModal, CallbackID: CallbackReview, PrivateMetadata: rc.Week,
		Title: pt("Weekly review"), Submit: pt("Record review"), Close: pt("Cancel"),
		Blocks: slackgo.Blocks{BlockSet: blocks},
	}
}

// ViewSubmission is a verified modal submission: who, which modal, and the answers by block.
type ViewSubmission struct {
	TeamID, UserID  string
	CallbackID      string
	PrivateMetadata string
	Values          map[string]string // block id → the value of its one input
}

// DecodeViewSubmission decodes a verified view_submission payload.
func DecodeViewSubmission(body []byte) (ViewSubmission, error) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return ViewSubmission{}, fmt.Errorf("%w: not a form: %v", ErrBadPayload, err)
	}
	var cb slackgo.InteractionCallback
	if err := json.Unmarshal([]byte(form.Get("payload")), &cb); err != nil {
		return ViewSubmission{}, fmt.Errorf("%w: %v", ErrBadPayload, err)
	}
	if cb.Type != slackgo.InteractionTypeViewSubmission || cb.User.ID == "" {
		return ViewSubmission{}, fmt.Errorf("%w: not a view_submission with a user", ErrBadPayload)
	}
	vs := ViewSubmission{TeamID: cb.Team.ID, UserID: cb.User.ID, CallbackID: cb.View.CallbackID, PrivateMetadata: cb.View.PrivateMetadata, Values: map[string]string{}}
	if vs.TeamID == "" {
		vs.TeamID = cb.User.TeamID
	}
	if cb.View.State != nil {
		for block, acts := range cb.View.State.Values {
			for _, a := range acts {
				vs.Values[block] = a.Value
			}
		}
	}
	return vs, nil
}

// openReview opens the review modal for a click on the summary's button, or tells the
// clicker why not.
func (h *Handler) openReview(ctx context.Context, in Interaction, to broker.Recipient) error {
	if h.o.Reviews == nil || h.o.Modals == nil {
		return h.o.Teller.Tell(ctx, to, "Reviews are not set up on this broker (slack.summary.reviewers).")
	}
	rc, err := h.o.Reviews.Open(ctx, broker.Caller{TeamID: in.TeamID, UserID: in.UserID}, in.Value)
	if err != nil {
		return h.tellErr(ctx, to, err)
	}
	return h.o.Modals.OpenModal(ctx, in.TriggerID, ReviewModal(rc))
}

// reviewSubmission records a submitted review and answers Slack at once: an empty 200
// closes the modal; a refusal is shown in the modal (response_action errors) and recorded.
func (h *Handler) reviewSubmission(w http.ResponseWriter, r *http.Request, body []byte) {
	vs, err := DecodeViewSubmission(body)
	if err != nil || vs.CallbackID != CallbackReview || h.o.Reviews == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	c := broker.Caller{TeamID: vs.TeamID, UserID: vs.UserID}
	ctx, cancel := context.WithTimeout(r.Context(), h.o.AckTimeout)
	defer cancel()
	var answers []broker.ReviewAnswer
	for i := 0; ; i++ {
		f, okF := vs.Values[foundBlock(i)]
		d, okD := vs.Values[doneBlock(i)]
		if !okF && !okD {
			break
		}
		answers = append(answers, broker.ReviewAnswer{Found: f, Done: d})
	}
	err = h.o.Reviews.Record(ctx, c, vs.PrivateMetadata, answers)
	if err == nil {
		w.WriteHeader(http.StatusOK)
		return
	}
	if !errors.Is(err, broker.ErrRefused) {
		h.log.ErrorContext(ctx, "record review", "error", err)
	}
	// Errors attach to an input block; a modal without inputs (no anomalies) gets its
	// message as an update of the view instead.
	msg := broker.UserMessage(err)
	var resp map[string]any
	if _, ok := vs.Values[foundBlock(0)]; ok {
		resp = map[string]any{"response_action": "errors", "errors": map[string]string{foundBlock(0): sumCut(msg, 150)}}
	} else {
		resp = map[string]any{"response_action": "update", "view": slackgo.ModalViewRequest{
			Type: slackgo.VTModal, Title: slackgo.NewTextBlockObject(slackgo.PlainTextType, "Weekly review", false, false),
			Blocks: slackgo.Blocks{BlockSet: []slackgo.Block{slackgo.NewSectionBlock(slackgo.NewTextBlockObject(slackgo.PlainTextType, sumCut(msg, SlackMaxSectionText), false, false), nil, nil)}},
		}}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	json.NewEncoder(w).Encode(resp)
}
