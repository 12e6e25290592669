-- An attempt's own cost (issue 16, point 1: the log row records the hedge's extra cost). Keep
-- equivalent to migrations/sqlite/0007_attempt_cost.sql.
-- `cost_picousd`: what the provider may bill for this attempt, when it is known apart from the
-- row's total: a hedge's cancelled attempt (its estimate) or a failed attempt the provider may
-- have billed. NULL on attempts whose cost is the row's own (the answer) or nothing, and on
-- every attempt written before this migration.
-- A nullable column without a default: adding it rewrites nothing.

ALTER TABLE attempts ADD COLUMN cost_picousd BIGINT;
