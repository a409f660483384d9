//! An Arrow IPC file, read block by block into buffers that are not zero-filled first.
//!
//! `arrow_ipc::reader::FileReader` reads each record batch's block into a buffer it has
//! zero-filled, then overwrites every byte with the file's: the zeroes are never read.
//! In a replay of `digits.yaml` the fill was 1.3% of the process's samples, on the thread
//! that reads, decodes and writes for every worker. This reader does what `FileReader`
//! does (the footer, its dictionaries, then each batch's block through arrow's own
//! [`FileDecoder`]), except that a block is read into a buffer's spare capacity, which
//! `Read::read_to_end` fills straight from the file.
//!
//! A block the footer places past the end of the file is an error naming its offset and
//! length before anything is allocated for it (a damaged footer must not make the replay
//! allocate gigabytes, or abort), and so is a file that ends inside a block.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::FileDecoder;
use arrow_ipc::Block;
use arrow_schema::{ArrowError, SchemaRef};

/// The batches of an Arrow IPC file, in order.
pub struct IpcFile {
    reader: BufReader<File>,
    layout: IpcLayout,
    next: usize,
}

/// What an Arrow IPC file's footer says: its schema, where its record batches lie, and
/// the decoder (holding its dictionaries) that turns a block's bytes into a batch. A
/// block can be read by any thread, from its own handle on the file
/// ([`IpcLayout::batch`]).
pub struct IpcLayout {
    decoder: FileDecoder,
    blocks: Vec<Block>,
    schema: SchemaRef,
    /// The file's length: no block may reach past it.
    len: u64,
}

impl IpcLayout {
    /// Reads the footer, schema and dictionaries of the file `reader` reads (positioned
    /// anywhere).
    pub fn read<R: Read + Seek>(reader: &mut R) -> Result<IpcLayout, ArrowError> {
        let len = reader.seek(SeekFrom::End(0))?;
        let mut tail = [0u8; 10];
        if len < tail.len() as u64 {
            return Err(ArrowError::ParseError(format!("{len} bytes are too few for an Arrow IPC file")));
        }
        reader.seek(SeekFrom::End(-(tail.len() as i64)))?;
        reader.read_exact(&mut tail)?;
        let footer_len = arrow_ipc::reader::read_footer_length(tail)? as u64;
        if footer_len + tail.len() as u64 > len {
            return Err(ArrowError::ParseError(format!(
                "the footer's length ({footer_len} bytes) is more than the file holds ({len} bytes)"
            )));
        }
        let mut footer = vec![0u8; footer_len as usize];
        reader.seek(SeekFrom::End(-((footer_len + tail.len() as u64) as i64)))?;
        reader.read_exact(&mut footer)?;
        let footer = arrow_ipc::root_as_footer(&footer)
            .map_err(|e| ArrowError::ParseError(format!("Unable to get root as footer: {e:?}")))?;
        let fb_schema =
            footer.schema().ok_or_else(|| ArrowError::ParseError("the footer holds no schema".to_string()))?;
        if !fb_schema.endianness().equals_to_target_endianness() {
            return Err(ArrowError::IpcError(
                "the file's byte order is not this machine's (a big-endian file)".to_string(),
            ));
        }
        let schema: SchemaRef = Arc::new(arrow_ipc::convert::try_fb_to_schema(fb_schema)?);
        let blocks: Vec<Block> = footer
            .recordBatches()
            .ok_or_else(|| ArrowError::ParseError("the footer lists no record batches".to_string()))?
            .iter()
            .copied()
            .collect();
        let mut decoder = FileDecoder::new(Arc::clone(&schema), footer.version());
        for block in footer.dictionaries().iter().flatten() {
            let buffer = read_block(reader, len, block)?;
            decoder.read_dictionary(block, &buffer)?;
        }
        Ok(IpcLayout { decoder, blocks, schema, len })
    }

    /// The file's schema.
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// The number of record batches the footer lists.
    pub fn batches(&self) -> usize {
        self.blocks.len()
    }

    /// The bytes of batch `i` in the file (its message and its body), as the footer
    /// gives them; 0 for a batch that is not listed or whose lengths are negative.
    pub fn size_of(&self, i: usize) -> u64 {
        self.blocks.get(i).map_or(0, |b| {
            u64::try_from(b.metaDataLength()).unwrap_or(0).saturating_add(u64::try_from(b.bodyLength()).unwrap_or(0))
        })
    }

    /// Batch `i` (of [`IpcLayout::batches`]), read through `reader`, a handle on the same
    /// file. `None` for a block that holds no record batch: as for arrow's own
    /// `FileReader`, the file ends there.
    pub fn batch<R: Read + Seek>(&self, reader: &mut R, i: usize) -> Result<Option<RecordBatch>, ArrowError> {
        let Some(block) = self.blocks.get(i) else { return Ok(None) };
        let buffer = read_block(reader, self.len, block)?;
        self.decoder.read_record_batch(block, &buffer)
    }
}

impl IpcFile {
    /// Opens `file` (positioned anywhere): reads its footer, schema and dictionaries.
    pub fn open(file: File) -> Result<IpcFile, ArrowError> {
        let mut reader = BufReader::new(file);
        let layout = IpcLayout::read(&mut reader)?;
        Ok(IpcFile { reader, layout, next: 0 })
    }

    /// The file's schema.
    pub fn schema(&self) -> SchemaRef {
        self.layout.schema()
    }

    /// Its footer, and the number of batches read so far: where another reader goes on.
    pub fn into_parts(self) -> (IpcLayout, usize) {
        (self.layout, self.next)
    }
}

/// The bytes of `block` (its message and its body) of a file of `len` bytes, read
/// without zero-filling.
fn read_block<R: Read + Seek>(reader: &mut R, len: u64, block: &Block) -> Result<Buffer, ArrowError> {
    let (offset, meta, body) = (block.offset(), block.metaDataLength(), block.bodyLength());
    let size = u64::try_from(meta).ok().zip(u64::try_from(body).ok()).and_then(|(m, b)| m.checked_add(b));
    let end = u64::try_from(offset).ok().zip(size).and_then(|(o, s)| o.checked_add(s));
    let (Some(size), Some(end)) = (size, end) else {
        return Err(past_the_end(offset, meta, body, len));
    };
    if end > len {
        return Err(past_the_end(offset, meta, body, len));
    }
    reader.seek(SeekFrom::Start(end - size))?;
    let mut bytes = Vec::with_capacity(size as usize);
    reader.by_ref().take(size).read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < size {
        return Err(ArrowError::IoError(
            format!("the file ends inside the block at offset {offset}"),
            std::io::ErrorKind::UnexpectedEof.into(),
        ));
    }
    Ok(Buffer::from_vec(bytes))
}

fn past_the_end(offset: i64, meta: i32, body: i64, len: u64) -> ArrowError {
    ArrowError::ParseError(format!(
        "the footer places a block of {meta} + {body} bytes at offset {offset}, past the end of the file ({len} bytes)"
    ))
}

impl Iterator for IpcFile {
    type Item = Result<RecordBatch, ArrowError>;

    /// The next batch; as `FileReader`, a block without a record batch ends the file.
    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.layout.batches() {
            return None;
        }
        self.next += 1;
        self.layout.batch(&mut self.reader, self.next - 1).transpose()
    }
}

#[cfg(test)]
mod tests {
    use arrow_array::types::Int32Type;
    use arrow_array::{ArrayRef, DictionaryArray, Float32Array, Int64Array};

    use super::*;

    /// An Arrow IPC file of three batches with a float, an integer and a dictionary
    /// column, as `arrow_ipc`'s writer lays it out; and the batches.
    fn written(path: &std::path::Path) -> Vec<RecordBatch> {
        let batches: Vec<RecordBatch> = (0..3)
            .map(|b| {
                let n = 100 + b;
                let x: ArrayRef = Arc::new(Float32Array::from_iter_values((0..n).map(|i| i as f32 * 0.5)));
                let id: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
                let tag: DictionaryArray<Int32Type> = (0..n).map(|i| ["a", "b", "c"][i % 3]).collect();
                RecordBatch::try_from_iter([("x", x), ("id", id), ("tag", Arc::new(tag) as ArrayRef)]).expect("batch")
            })
            .collect();
        let file = File::create(path).expect("create");
        let mut writer = arrow_ipc::writer::FileWriter::try_new(file, &batches[0].schema()).expect("writer");
        batches.iter().for_each(|b| writer.write(b).expect("write"));
        writer.finish().expect("finish");
        batches
    }

    #[test]
    fn reads_the_batches_arrows_own_reader_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.arrow");
        let batches = written(&path);
        let ours = IpcFile::open(File::open(&path).expect("open")).expect("ipc file");
        assert_eq!(ours.schema(), batches[0].schema());
        let read: Vec<RecordBatch> = ours.collect::<Result<_, _>>().expect("batches");
        let theirs: Vec<RecordBatch> = arrow_ipc::reader::FileReader::try_new(File::open(&path).expect("open"), None)
            .expect("reader")
            .collect::<Result<_, _>>()
            .expect("batches");
        assert_eq!(read, batches);
        assert_eq!(read, theirs);
    }

    #[test]
    fn a_block_past_the_end_of_the_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("in.arrow");
        written(&path);
        let bytes = std::fs::read(&path).expect("read");
        // The footer stays whole, but the file loses 4 KiB before it: the last block
        // it lists now runs past the end.
        let cut = bytes.len() - 2_000;
        let short = [&bytes[..cut - 4096], &bytes[cut..]].concat();
        let damaged = dir.path().join("short.arrow");
        std::fs::write(&damaged, &short).expect("write");
        let errors: Vec<String> = IpcFile::open(File::open(&damaged).expect("open"))
            .expect("the footer is whole")
            .filter_map(|b| b.err().map(|e| e.to_string()))
            .collect();
        assert!(errors.iter().any(|e| e.contains("past the end of the file")), "{errors:?}");
        // Too short to hold a footer at all.
        std::fs::write(&damaged, b"ARROW1").expect("write");
        let error = IpcFile::open(File::open(&damaged).expect("open")).err().expect("an error").to_string();
        assert!(error.contains("too few for an Arrow IPC file"), "{error}");
    }
}
