-- A request's stage (grants.RequestStage) becomes a column of its own; it was kept in the
-- evidence map under "stage".
ALTER TABLE requests ADD COLUMN stage TEXT NOT NULL DEFAULT '';
UPDATE requests
   SET stage = COALESCE(json_extract(evidence, '$.stage'), ''),
       evidence = json_remove(evidence, '$.stage')
 WHERE json_extract(evidence, '$.stage') IS NOT NULL;
