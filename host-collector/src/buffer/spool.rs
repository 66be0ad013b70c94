//! Spool: an append-only log on local disk of the events the collector has acknowledged, so
//! that a collector killed before its writer stored them (SIGKILL, OOM kill, crash) replays
//! them at the next start instead of losing them.
//!
//! Every accepted event is appended as one JSON line `{"o":<ordinal>,"row":{...}}` before the
//! 200 reply goes out; the ordinal is the queue's (see `Queue::next_ordinal`). Lines go to
//! segment files named `<generation>-<first ordinal>.ndjson`; the active segment is sealed once
//! it passes the segment size. A segment is deleted when every ordinal in it is below the
//! queue's low watermark, i.e. each of its events was persisted or dropped (and counted), so
//! the spool holds about what the queue holds. A start reads every segment of earlier runs,
//! re-appends the events to its own generation, then deletes the old files; the store's
//! `(source, seq)` key absorbs what had been written already. A torn last line (the process
//! died mid-write) is skipped and counted.
//!
//! Without `fsync` (the default) the data survives the process dying, not the machine
//! losing power; `--spool-fsync` adds an fdatasync per ingest request.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use crate::event::Row;

#[derive(Debug, Clone)]
pub struct SpoolConfig {
    pub dir: PathBuf,
    /// Size after which the active segment is sealed and a new one started.
    pub segment_bytes: u64,
    pub fsync: bool,
}

/// What an earlier run left behind: the events to replay and the files to delete afterwards.
#[derive(Debug, Default)]
pub struct Recovered {
    pub rows: Vec<Row>,
    /// Lines that could not be read back (a write cut short by the crash).
    pub torn_lines: u64,
    files: Vec<PathBuf>,
}

/// Sizes for metrics and health.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolLevels {
    pub bytes: u64,
    pub segments: usize,
    pub write_errors: u64,
    /// Whether the latest append failed (ingest answers 503 until one succeeds).
    pub failing: bool,
}

#[derive(Serialize)]
struct RecordOut<'a> {
    o: u64,
    row: &'a Row,
}

/// The ordinal `o` stays in the file for inspection only: replay assigns new ones.
#[derive(Deserialize)]
struct RecordIn {
    row: Row,
}

struct Segment {
    path: PathBuf,
    first: u64,
    /// One past the last ordinal written to it.
    end: u64,
    bytes: u64,
}

struct Active {
    segment: Segment,
    file: File,
}

struct State {
    active: Option<Active>,
    sealed: VecDeque<Segment>,
    write_errors: u64,
    failing: bool,
}

pub struct Spool {
    config: SpoolConfig,
    generation: u64,
    state: Mutex<State>,
}

impl Spool {
    /// Opens (creating) the spool directory and reads what earlier runs left in it.
    pub fn open(config: SpoolConfig) -> io::Result<(Spool, Recovered)> {
        fs::create_dir_all(&config.dir).map_err(|e| with_path(e, &config.dir))?;
        let mut files = segment_files(&config.dir)?;
        files.sort_by_key(|(generation, first, _)| (*generation, *first));
        let generation = files.iter().map(|(g, _, _)| g + 1).max().unwrap_or(1);
        let mut recovered = Recovered::default();
        for (_, _, path) in files {
            read_segment(&path, &mut recovered)?;
            recovered.files.push(path);
        }
        let spool = Spool {
            config,
            generation,
            state: Mutex::new(State {
                active: None,
                sealed: VecDeque::new(),
                write_errors: 0,
                failing: false,
            }),
        };
        Ok((spool, recovered))
    }

    pub fn dir(&self) -> &Path {
        &self.config.dir
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `rows`, the first having ordinal `first`, and returns once they are in the
    /// file (and on disk with fsync). On failure nothing may be acknowledged; the segment is
    /// sealed so a partly written line cannot run into the next append.
    pub fn append<'a>(
        &self,
        first: u64,
        rows: impl IntoIterator<Item = &'a Row>,
    ) -> io::Result<()> {
        let mut buffer = Vec::new();
        let mut end = first;
        for row in rows {
            serde_json::to_writer(&mut buffer, &RecordOut { o: end, row })?;
            buffer.push(b'\n');
            end += 1;
        }
        if end == first {
            return Ok(());
        }
        let mut state = self.lock();
        let result = self.write(&mut state, first, &buffer);
        match &result {
            Ok(()) => {
                state.failing = false;
                if let Some(active) = &mut state.active {
                    active.segment.end = end;
                    active.segment.bytes += buffer.len() as u64;
                }
            }
            Err(_) => {
                state.write_errors += 1;
                state.failing = true;
                if let Some(active) = state.active.take() {
                    let mut segment = active.segment;
                    // The torn tail may hold some of these rows: keep the segment until the
                    // watermark passes them, like any other.
                    segment.end = end;
                    state.sealed.push_back(segment);
                }
            }
        }
        result
    }

    fn write(&self, state: &mut State, first: u64, buffer: &[u8]) -> io::Result<()> {
        let needs_new = state
            .active
            .as_ref()
            .is_none_or(|a| a.segment.bytes >= self.config.segment_bytes);
        if needs_new {
            self.rotate(state, first)?;
        }
        let Some(active) = state.active.as_mut() else {
            return Err(io::Error::other("no active spool segment"));
        };
        active.file.write_all(buffer)?;
        if self.config.fsync {
            active.file.sync_data()?;
        }
        Ok(())
    }

    fn rotate(&self, state: &mut State, first: u64) -> io::Result<()> {
        if let Some(old) = state.active.take() {
            state.sealed.push_back(old.segment);
        }
        let path = self
            .config
            .dir
            .join(format!("{:010}-{first:020}.ndjson", self.generation));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| with_path(e, &path))?;
        if self.config.fsync {
            // The new file's directory entry must survive too.
            File::open(&self.config.dir)?.sync_all()?;
        }
        state.active = Some(Active {
            segment: Segment {
                path,
                first,
                end: first,
                bytes: 0,
            },
            file,
        });
        Ok(())
    }

    /// Deletes the segments whose events are all below `watermark` (persisted or dropped).
    /// Returns how many files were removed.
    pub fn release_below(&self, watermark: u64) -> usize {
        let mut state = self.lock();
        if state
            .active
            .as_ref()
            .is_some_and(|a| a.segment.end > a.segment.first && a.segment.end <= watermark)
        {
            // Fully released: seal it so the next append starts a fresh file.
            if let Some(active) = state.active.take() {
                state.sealed.push_back(active.segment);
            }
        }
        let mut removed = 0;
        while state.sealed.front().is_some_and(|s| s.end <= watermark) {
            let Some(segment) = state.sealed.pop_front() else {
                break;
            };
            remove_file(&segment.path);
            removed += 1;
        }
        removed
    }

    /// Deletes the files of earlier runs once their events are in this run's spool.
    pub fn forget_recovered(&self, recovered: Recovered) {
        recovered.files.iter().for_each(|path| remove_file(path));
    }

    pub fn levels(&self) -> SpoolLevels {
        let state = self.lock();
        let active = state.active.as_ref().map(|a| &a.segment);
        SpoolLevels {
            bytes: state.sealed.iter().chain(active).map(|s| s.bytes).sum(),
            segments: state.sealed.len() + usize::from(active.is_some()),
            write_errors: state.write_errors,
            failing: state.failing,
        }
    }
}

fn with_path(error: io::Error, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

fn remove_file(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(ev = "spool", msg = "cannot delete segment", path = %path.display(), error = %e);
        }
    }
}

/// Segment files in `dir` as (generation, first ordinal, path); other files are ignored.
fn segment_files(dir: &Path) -> io::Result<Vec<(u64, u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| with_path(e, dir))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some((generation, first)) = parse_segment_name(name) {
            found.push((generation, first, path));
        }
    }
    Ok(found)
}

fn parse_segment_name(name: &str) -> Option<(u64, u64)> {
    let stem = name.strip_suffix(".ndjson")?;
    let (generation, first) = stem.split_once('-')?;
    Some((generation.parse().ok()?, first.parse().ok()?))
}

fn read_segment(path: &Path, recovered: &mut Recovered) -> io::Result<()> {
    let file = File::open(path).map_err(|e| with_path(e, path))?;
    for line in BufReader::new(file).split(b'\n') {
        let line = line?;
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<RecordIn>(&line) {
            Ok(record) => recovered.rows.push(record.row),
            Err(_) => recovered.torn_lines += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Level;

    fn row(seq: u64) -> Row {
        let at = chrono::DateTime::from_timestamp(1_700_000_000, 123_000)
            .map(|t| t.naive_utc())
            .unwrap_or_default();
        Row {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            span_id: None,
            instance_id: Some("demo".into()),
            mcp_method: Some("tools/call".into()),
            tool_name: Some("echo".into()),
            token_header: Some("authorization".into()),
            token: Some("sha256:0123456789ab".into()),
            event: "request".into(),
            level: Level::Info,
            log: format!(r#"{{"event":"request","seq":{seq},"note":"line\nbreak"}}"#),
            source: "vm-1".into(),
            seq,
            created_at: at,
            received_at: at,
        }
    }

    fn config(dir: &Path, segment_bytes: u64) -> SpoolConfig {
        SpoolConfig {
            dir: dir.to_path_buf(),
            segment_bytes,
            fsync: false,
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_spool_replays_what_the_last_run_did_not_release() {
        let dir = temp_dir("replay");
        let (spool, recovered) = Spool::open(config(&dir, 1 << 20)).unwrap();
        assert!(recovered.rows.is_empty());
        let rows: Vec<Row> = (0..5).map(row).collect();
        spool.append(0, &rows[..3]).unwrap();
        spool.append(3, &rows[3..]).unwrap();
        drop(spool); // as if killed: nothing released

        let (second, recovered) = Spool::open(config(&dir, 1 << 20)).unwrap();
        assert_eq!(
            recovered.rows, rows,
            "every row comes back, in order, unchanged"
        );
        assert_eq!(recovered.torn_lines, 0);
        second.append(0, &recovered.rows).unwrap();
        second.forget_recovered(recovered);
        drop(second);
        let (_, third) = Spool::open(config(&dir, 1 << 20)).unwrap();
        assert_eq!(third.rows, rows, "re-spooled once, old files gone");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn released_segments_are_deleted_and_held_ones_kept() {
        let dir = temp_dir("release");
        // Tiny segments: every append after the first starts a new one.
        let (spool, _) = Spool::open(config(&dir, 1)).unwrap();
        for first in [0, 2, 4] {
            spool.append(first, &[row(first), row(first + 1)]).unwrap();
        }
        assert_eq!(spool.levels().segments, 3);
        assert_eq!(spool.release_below(3), 1, "only [0,2) is wholly below 3");
        assert_eq!(spool.levels().segments, 2);
        drop(spool);
        let (spool, recovered) = Spool::open(config(&dir, 1)).unwrap();
        let seqs: Vec<u64> = recovered.rows.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![2, 3, 4, 5]);
        spool.forget_recovered(recovered);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fully_released_active_segment_is_deleted_too() {
        let dir = temp_dir("active");
        let (spool, _) = Spool::open(config(&dir, 1 << 20)).unwrap();
        spool.append(0, &[row(0), row(1)]).unwrap();
        assert_eq!(spool.release_below(1), 0);
        assert_eq!(spool.release_below(2), 1);
        assert_eq!(spool.levels().bytes, 0);
        spool.append(2, &[row(2)]).unwrap();
        assert_eq!(spool.levels().segments, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_counted_and_the_rest_replayed() {
        let dir = temp_dir("torn");
        let (spool, _) = Spool::open(config(&dir, 1 << 20)).unwrap();
        spool.append(0, &[row(0), row(1)]).unwrap();
        drop(spool);
        let (_, _, path) = segment_files(&dir).unwrap().remove(0);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"o":2,"row":{"trace_id":"4bf9"#)
            .unwrap();
        drop(file);
        let (_, recovered) = Spool::open(config(&dir, 1 << 20)).unwrap();
        assert_eq!(recovered.rows.len(), 2);
        assert_eq!(recovered.torn_lines, 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_files_are_left_alone() {
        assert_eq!(
            parse_segment_name("0000000003-00000000000000000042.ndjson"),
            Some((3, 42))
        );
        assert_eq!(parse_segment_name("notes.txt"), None);
        assert_eq!(parse_segment_name("x-1.ndjson"), None);
    }
}
