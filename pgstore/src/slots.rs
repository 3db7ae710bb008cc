//! Slots on PostgreSQL: concurrent sessions counted exactly across nodes.
//!
//! Responsible for: reserving a member of a group in one transaction serialized per group
//! (an advisory lock, then a count of the members used within the idle time and the insert
//! in one statement whose snapshot follows the lock), loading a group the first time any
//! node sees it, touching and releasing members. Not responsible for: the cap or the idle
//! time (the caller's), or the per-node count (the API's `SessionSlots`).

use halyard_storage::slots::{SlotRequest, Slots};
use halyard_storage::StoreError;

use crate::pool::Conn;
use crate::store::{db, PgStore};

fn ms(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Slots for PgStore {
    fn reserve(&self, req: &SlotRequest<'_>) -> Result<Result<(), u64>, StoreError> {
        let mut lease = self.lease()?;
        let Conn { client, sql } = lease.conn();
        let mut tx = client.transaction().map_err(db)?;
        tx.execute(&sql.lock_slots, &[&req.group]).map_err(db)?;
        if !tx
            .query(&sql.first_sight, &[&req.group])
            .map_err(db)?
            .is_empty()
        {
            let (members, used): (Vec<String>, Vec<i64>) = (req.present)()
                .into_iter()
                .map(|(m, at)| (m, ms(at)))
                .unzip();
            tx.execute(&sql.load_slots, &[&req.group, &members, &used])
                .map_err(db)?;
        }
        let (now, idle) = (ms(req.now_ms), ms(req.idle_ms));
        let max = i64::from(req.max);
        let row = tx
            .query_one(
                &sql.reserve_slot,
                &[&req.group, &req.member, &now, &idle, &max],
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        if row.get::<_, bool>(0) {
            return Ok(Ok(()));
        }
        let oldest: Option<i64> = row.get(1);
        let idles_at = oldest.unwrap_or(now).saturating_add(idle);
        Ok(Err(u64::try_from(idles_at - now).unwrap_or(0).max(1)))
    }

    fn touch(&self, group: &str, member: &str, now_ms: u64) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        let Conn { client, sql } = lease.conn();
        client
            .execute(&sql.touch_slot, &[&group, &member, &ms(now_ms)])
            .map_err(db)?;
        Ok(())
    }

    fn release(&self, group: &str, member: &str) -> Result<(), StoreError> {
        let mut lease = self.lease()?;
        let Conn { client, sql } = lease.conn();
        client
            .execute(&sql.release_slot, &[&group, &member])
            .map_err(db)?;
        Ok(())
    }
}
