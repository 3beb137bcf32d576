//! Several commands in one write, their replies read in order: the put of a
//! reply or follow-up on any tube (`use`, `put`, `use default`), and a
//! worker's per-job paths (a job's statistics, its delete and the next
//! reserve in one round trip).

use bytes::BytesMut;

use super::super::error::{Error, Result};
use super::super::proto::{self, Command, Response};
use super::super::stats::JobStats;
use super::{Client, Job, KEEP_WRITE_BUFFER};

impl Client {
    /// Puts a job on `tube` and goes back to using `default`: `use tube`,
    /// `put` and `use default` in one write, so one round trip. A
    /// connection that puts on many tubes this way (a worker's replies)
    /// keeps none of them in use, and beanstalkd drops a tube once its jobs
    /// are gone and nobody uses or watches it.
    ///
    /// # Errors
    ///
    /// As [`Client::put`], and [`Error::InvalidTube`] before sending.
    pub async fn put_in(
        &mut self,
        tube: &str,
        priority: u32,
        delay: u32,
        ttr: u32,
        body: &[u8],
    ) -> Result<u64> {
        proto::validate_tube(tube)?;
        let use_tube = Command::Use(tube);
        let put = Command::Put {
            priority,
            delay,
            ttr,
            body,
        };
        let use_default = Command::Use("default");
        let sent = self.send(&[use_tube, put, use_default]).await;
        if self.write_buf.capacity() > KEEP_WRITE_BUFFER {
            self.write_buf = BytesMut::with_capacity(1024);
        }
        sent?;
        match self.receive().await? {
            Response::Using(used) if used == tube => {}
            other => return Err(self.unexpected(use_tube, other)),
        }
        let inserted = match self.receive().await? {
            Response::Inserted(id) => Ok(id),
            Response::Buried(Some(id)) => Err(Error::Buried(Some(id))),
            other => Err(self.unexpected(put, other)),
        };
        if self.desynced {
            // The next frame is not the `use default` answer.
            return inserted;
        }
        match self.receive().await? {
            Response::Using(used) if used == "default" => inserted,
            other => Err(self.unexpected(use_default, other)),
        }
    }

    /// Sends `stats-job id`, `delete id` and `reserve-with-timeout secs` in
    /// one write and reads the three replies: a finished job's statistics
    /// (for its log line), its deletion and the next job, in one round trip.
    ///
    /// The server runs the three one after another whatever each outcome. A
    /// connection failure fails all three.
    pub async fn stats_delete_and_reserve_with_timeout(
        &mut self,
        id: u64,
        secs: u32,
    ) -> (Result<JobStats>, Result<()>, Result<Job>) {
        let stats = Command::StatsJob(id);
        let delete = Command::Delete(id);
        let reserve = Command::ReserveWithTimeout(secs);
        if let Err(e) = self.send(&[stats, delete, reserve]).await {
            let (a, b) = (e.duplicate(), e.duplicate());
            return (Err(e), Err(a), Err(b));
        }
        let stats = match self.receive().await {
            Ok(Response::Ok(body)) => JobStats::from_yaml(&body),
            Ok(other) => Err(self.unexpected(stats, other)),
            Err(e) => {
                let (a, b) = (e.duplicate(), e.duplicate());
                return (Err(e), Err(a), Err(b));
            }
        };
        if self.desynced {
            let e = Error::Protocol("connection out of step after `stats-job`".to_owned());
            let (a, b) = (e.duplicate(), e.duplicate());
            return (stats, Err(a), Err(b));
        }
        let (deleted, reserved) = self.finish_delete_and_reserve(delete, reserve).await;
        (stats, deleted, reserved)
    }

    /// Sends `stats-job id` and `delete id` in one write and reads both
    /// replies: a finished job's statistics (for its log line) and its
    /// deletion in one round trip, for a worker whose next reserve goes to
    /// another server.
    ///
    /// The server runs both whatever the first's outcome. A connection
    /// failure fails both.
    pub async fn stats_and_delete(&mut self, id: u64) -> (Result<JobStats>, Result<()>) {
        let stats = Command::StatsJob(id);
        let delete = Command::Delete(id);
        if let Err(e) = self.send(&[stats, delete]).await {
            let copy = e.duplicate();
            return (Err(e), Err(copy));
        }
        let stats = match self.receive().await {
            Ok(Response::Ok(body)) => JobStats::from_yaml(&body),
            Ok(other) => Err(self.unexpected(stats, other)),
            Err(e) => {
                let copy = e.duplicate();
                return (Err(e), Err(copy));
            }
        };
        if self.desynced {
            let e = Error::Protocol("connection out of step after `stats-job`".to_owned());
            return (stats, Err(e));
        }
        let deleted = match self.receive().await {
            Ok(Response::Deleted) => Ok(()),
            Ok(other) => Err(self.unexpected(delete, other)),
            Err(e) => Err(e),
        };
        (stats, deleted)
    }

    /// Sends `delete id` and `reserve-with-timeout secs` in one write and
    /// reads both replies (one round trip per job on the fast path).
    ///
    /// The reserve runs whatever the delete's outcome, as the server sees
    /// them separately. A connection failure fails both.
    pub async fn delete_and_reserve_with_timeout(
        &mut self,
        id: u64,
        secs: u32,
    ) -> (Result<()>, Result<Job>) {
        let delete = Command::Delete(id);
        let reserve = Command::ReserveWithTimeout(secs);
        if let Err(e) = self.send(&[delete, reserve]).await {
            let copy = e.duplicate();
            return (Err(e), Err(copy));
        }
        self.finish_delete_and_reserve(delete, reserve).await
    }

    /// Reads the replies to a `delete` and a `reserve-with-timeout` sent
    /// together.
    async fn finish_delete_and_reserve(
        &mut self,
        delete: Command<'_>,
        reserve: Command<'_>,
    ) -> (Result<()>, Result<Job>) {
        let deleted = match self.receive().await {
            Ok(Response::Deleted) => Ok(()),
            Ok(other) => Err(self.unexpected(delete, other)),
            Err(e) => {
                let copy = e.duplicate();
                return (Err(e), Err(copy));
            }
        };
        if self.desynced {
            // The delete's reply was out of step, so the next frame is not
            // the reserve's answer.
            let e = Error::Protocol("connection out of step after `delete`".to_owned());
            return (deleted, Err(e));
        }
        let reserved = match self.receive().await {
            Ok(reply) => self.job(reserve, reply),
            Err(e) => Err(e),
        };
        (deleted, reserved)
    }
}
