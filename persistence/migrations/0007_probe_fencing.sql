-- The probe under the cluster's fencing rule: which incarnation of its node
-- an activation ran under, and when it last wrote. An activation that never
-- closed (its node died or lost the lease) ended, for the checker, at its
-- last committed write.
ALTER TABLE probe_activations
  ADD COLUMN incarnation bigint,
  ADD COLUMN last_write_at timestamptz;
