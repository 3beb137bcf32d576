//! Which records stand: a pure judgement of records against their jobs'
//! states.

use std::collections::{BTreeMap, HashMap};

use beanbox_queue::JobState;

/// What a record is to become, given its job's state.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Per job, the record id that stands.
    pub keep: BTreeMap<u64, u64>,
    /// Record ids to delete: their job is gone, ready or delayed (kicked or
    /// deleted elsewhere), or a newer record of the same job stands.
    pub delete: Vec<u64>,
}

/// Judges records against their jobs' states. `records` are (record id,
/// job id) pairs; `states` maps a job to `Some(state)`, or `None` when
/// beanstalkd does not know it; a job missing from `states` (its state
/// could not be read) keeps all its records. A buried or reserved job
/// keeps its newest record (the highest record id); the others go.
pub fn judge(records: &[(u64, u64)], states: &HashMap<u64, Option<JobState>>) -> Verdict {
    let mut by_job: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(record, job) in records {
        by_job.entry(job).or_default().push(record);
    }
    let mut verdict = Verdict::default();
    for (job, mut ids) in by_job {
        ids.sort_unstable();
        match states.get(&job) {
            // Unknown: keep everything, judge again next time.
            None => {
                let newest = *ids.last().expect("one record at least");
                verdict.keep.insert(job, newest);
            }
            Some(Some(JobState::Buried | JobState::Reserved)) => {
                let newest = ids.pop().expect("one record at least");
                verdict.keep.insert(job, newest);
                verdict.delete.extend(ids);
            }
            // Gone, or back in the queue: the failure is no longer current.
            Some(_) => verdict.delete.extend(ids),
        }
    }
    verdict.delete.sort_unstable();
    verdict
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn states(pairs: &[(u64, Option<JobState>)]) -> HashMap<u64, Option<JobState>> {
        pairs.iter().copied().collect()
    }

    #[test]
    fn records_of_gone_ready_or_delayed_jobs_are_stale() {
        let records = [(100, 1), (101, 2), (102, 3), (103, 4)];
        let verdict = judge(
            &records,
            &states(&[
                (1, None),
                (2, Some(JobState::Ready)),
                (3, Some(JobState::Delayed)),
                (4, Some(JobState::Buried)),
            ]),
        );
        assert_eq!(verdict.delete, [100, 101, 102]);
        assert_eq!(verdict.keep, BTreeMap::from([(4, 103)]));
    }

    #[test]
    fn the_newest_record_of_a_job_wins() {
        let records = [(105, 7), (101, 7), (103, 7)];
        let verdict = judge(&records, &states(&[(7, Some(JobState::Buried))]));
        assert_eq!(verdict.keep, BTreeMap::from([(7, 105)]));
        assert_eq!(verdict.delete, [101, 103]);
    }

    #[test]
    fn records_of_reserved_jobs_are_kept() {
        // Written just before the bury, or kicked by another tool and
        // running again: not stale yet.
        let records = [(100, 1), (101, 1)];
        let verdict = judge(&records, &states(&[(1, Some(JobState::Reserved))]));
        assert_eq!(verdict.keep, BTreeMap::from([(1, 101)]));
        assert_eq!(verdict.delete, [100]);
    }

    #[test]
    fn records_of_jobs_whose_state_is_unknown_are_all_kept() {
        let verdict = judge(&[(100, 1), (101, 1)], &HashMap::new());
        assert_eq!(verdict.keep, BTreeMap::from([(1, 101)]));
        assert!(verdict.delete.is_empty());
    }
}
