-- NextDue reads the earliest deadline from two indexes instead of scanning every live grant:
-- grants_due (unclaimed or lapsed claims, by due_at) and this one (grants held past their due
-- time by a claim, by claimed_to; only the few being revoked right now).
CREATE INDEX grants_claimed ON grants(claimed_to) WHERE state <> 'revoked' AND claimed_to > due_at;
