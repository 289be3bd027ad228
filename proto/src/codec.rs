//! The gRPC codec of every ringfs service: prost messages, like `tonic_prost::ProstCodec`, but the
//! encoder reserves a message's encoded size before writing it. prost writes fields in order, so a
//! packet's 1 MiB of data landed in a buffer that then had to grow (and be copied again) for the
//! chunk hashes that follow it; one exact reservation makes encoding a single copy.

use prost::Message;
use std::marker::PhantomData;
use tonic::codec::{Codec, EncodeBuf};
use tonic::Status;
use tonic_prost::ProstDecoder;

/// Prost codec with size-reserving encoding (see the module doc). Named in the generated code.
#[derive(Debug, Clone)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        ProstCodec(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = Encoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        Encoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::default()
    }
}

/// Encodes a prost message into a buffer reserved to its exact size.
#[derive(Debug, Clone, Default)]
pub struct Encoder<T>(PhantomData<T>);

impl<T: Message> tonic::codec::Encoder for Encoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        buf.reserve(item.encoded_len());
        item.encode(buf)
            .map_err(|e| Status::internal(format!("encoding a message: {e}")))
    }
}
