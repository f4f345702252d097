package grants

import (
	"strconv"
	"strings"
)

// FieldError is an ErrInvalid about one key of a provider's configuration block. A
// provider's config Validate method returns one per bad key (several joined with
// errors.Join), so that the config loader can name the key's full path and line, and the
// provider's constructor can return the same words: one rule, one place.
type FieldError struct {
	// Block is the provider's configuration block, e.g. "aws_sts"; "" for none.
	Block string
	// Field is the key inside the block, e.g. "role_arn".
	Field string
	// Value is the offending value, quoted in front of Msg; "" shows none. It is never a
	// secret (secret keys are reported without their value).
	Value string
	// Msg says what is wrong and how to fix it, e.g. "is not an IAM role ARN (…)".
	Msg string
}

// Error is "block.field "value" msg" (parts omitted when empty).
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Block != "" {
		b.WriteString(e.Block + ".")
	}
	b.WriteString(e.Field)
	if e.Value != "" {
		b.WriteString(" " + strconv.Quote(e.Value))
	}
	b.WriteString(" " + e.Msg)
	return b.String()
}

// Unwrap makes every FieldError match ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }
