-- A request's stage (grants.RequestStage) becomes a column of its own; it was kept in the
-- evidence map under "stage".
ALTER TABLE requests ADD COLUMN stage TEXT NOT NULL DEFAULT '';
UPDATE requests
   SET stage = evidence::jsonb ->> 'stage',
       evidence = (evidence::jsonb - 'stage')::text
 WHERE evidence::jsonb ? 'stage';
