"""The scheduled jobs: one module each, `run(ctx) -> verdict` (mirrors `tuner.commands`).

The recipe, as the jobs share it (`context.Context`):
  resume        the first job, and the one after the database came back: sample, take the
                lead, settle what the journal shows in flight, resume a verification window.
  sample        a Snapshot every `sample_interval`; the latest one feeds every other job.
  advise        the workload since the last advice → Advisor → policy.decide → journal:
                `proposed` (recommend mode, awaiting `pg-tuner approve`) or `approved` (apply).
  act           the oldest approved action, if the guards allow it now: samples over
                `baseline_window` (journal `baselined`, with the figures), EXPLAIN the
                table's queries, run it (`applying` → `applied`/`failed`), EXPLAIN again,
                and start the verification window (`verifying`, with the watched queries).
  verify        when the window has run: keep, roll back (DROP / re-create), or extend.
                Operator rollback requests (`pg-tuner rollback ID`) are carried out here too.
  housekeeping  drop the tuner's own indexes unused for the level's `drop_unused_after`.
Only the leader (the executor's advisory lock) acts; without it the jobs only sample.
One action is in flight at a time; its state lives in the journal, so a restart resumes it.
What to do next is decided in pure modules (`tuner.queue`, `tuner.watch`, `tuner.policy`,
`tuner.guards`, `tuner.verify`); the jobs read the world, call them, and record the result.
"""
