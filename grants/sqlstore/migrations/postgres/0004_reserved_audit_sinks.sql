-- Reserved: migration 4 belongs to the audit sinks work (issue 17 item 4), developed in
-- parallel. This placeholder keeps the version numbers contiguous on this branch; the merge
-- replaces it with the sinks migration (and renumbers if needed). It changes nothing.
SELECT 1;
