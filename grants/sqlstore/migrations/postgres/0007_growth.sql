-- The pending cap (#16.7): a requester's pending requests are found through (slack_user,
-- state), not by reading every request the person ever made (requests_slack_user).
CREATE INDEX requests_user_state ON requests(slack_user, state, created_at);
