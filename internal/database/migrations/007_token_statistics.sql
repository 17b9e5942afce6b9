-- The planner assumed type, param and system of idx_token independent and
-- estimated a few hundred rows where a whole system's identifiers match
-- (267 estimated, 108,592 actual at 543k studies), choosing idx_token_system
-- for lookups it should not. Extended statistics teach it the correlation.
CREATE STATISTICS idx_token_type_param_system (dependencies, mcv) ON type, param, system FROM idx_token;
ANALYZE idx_token;
