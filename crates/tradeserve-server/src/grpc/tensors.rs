//! Open Inference Protocol tensors in and out: an input's values from its typed `contents` or
//! from the request's `raw_input_contents` (little-endian; BYTES elements each prefixed with
//! a 4-byte little-endian length), and typed output tensors.

use tonic::Status;
use tradeserve_grpc::inference::model_infer_request::InferInputTensor;
use tradeserve_grpc::inference::model_infer_response::InferOutputTensor;
use tradeserve_grpc::inference::{InferTensorContents, ModelInferRequest};

use super::status;

/// The input named `name` and its raw contents, if the request sent it.
pub fn input<'a>(
    r: &'a ModelInferRequest,
    name: &str,
) -> Option<(&'a InferInputTensor, Option<&'a [u8]>)> {
    let i = r.inputs.iter().position(|t| t.name == name)?;
    Some((&r.inputs[i], r.raw_input_contents.get(i).map(Vec::as_slice)))
}

/// How many elements a shape holds (every dimension ≥ 0).
fn elements(t: &InferInputTensor) -> Result<usize, Status> {
    t.shape.iter().try_fold(1usize, |n, d| {
        usize::try_from(*d)
            .ok()
            .and_then(|d| n.checked_mul(d))
            .ok_or_else(|| status::invalid(&t.name, format!("shape {:?} is not valid", t.shape)))
    })
}

/// A BYTES input's elements.
pub fn bytes(t: &InferInputTensor, raw: Option<&[u8]>) -> Result<Vec<Vec<u8>>, Status> {
    if t.datatype != "BYTES" {
        return Err(status::invalid(
            &t.name,
            format!("{} must be BYTES, not {:?}", t.name, t.datatype),
        ));
    }
    let values = match raw {
        Some(mut raw) => {
            let mut out = Vec::new();
            while !raw.is_empty() {
                let (len, rest) = raw.split_at_checked(4).ok_or_else(|| truncated(t))?;
                let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                let (value, rest) = rest.split_at_checked(len).ok_or_else(|| truncated(t))?;
                out.push(value.to_vec());
                raw = rest;
            }
            out
        }
        None => t
            .contents
            .as_ref()
            .map(|c| c.bytes_contents.clone())
            .unwrap_or_default(),
    };
    check_count(t, values.len())?;
    Ok(values)
}

/// An FP32 or FP64 input's values, as f32 (what the models take).
pub fn floats(t: &InferInputTensor, raw: Option<&[u8]>) -> Result<Vec<f32>, Status> {
    #[allow(clippy::cast_possible_truncation)] // FP64 inputs are narrowed, as REST does
    let values: Vec<f32> = match (t.datatype.as_str(), raw) {
        ("FP32", Some(raw)) => le_chunks::<4>(t, raw)?.map(f32::from_le_bytes).collect(),
        ("FP64", Some(raw)) => le_chunks::<8>(t, raw)?
            .map(|b| f64::from_le_bytes(b) as f32)
            .collect(),
        ("FP32", None) => t
            .contents
            .as_ref()
            .map(|c| c.fp32_contents.clone())
            .unwrap_or_default(),
        ("FP64", None) => t
            .contents
            .as_ref()
            .map(|c| c.fp64_contents.iter().map(|v| *v as f32).collect())
            .unwrap_or_default(),
        (other, _) => {
            return Err(status::invalid(
                &t.name,
                format!("{} must be FP32 or FP64, not {other:?}", t.name),
            ));
        }
    };
    check_count(t, values.len())?;
    Ok(values)
}

fn le_chunks<'a, const N: usize>(
    t: &InferInputTensor,
    raw: &'a [u8],
) -> Result<impl Iterator<Item = [u8; N]> + 'a, Status> {
    if !raw.len().is_multiple_of(N) {
        return Err(truncated(t));
    }
    Ok(raw
        .chunks_exact(N)
        .filter_map(|c| <[u8; N]>::try_from(c).ok()))
}

fn truncated(t: &InferInputTensor) -> Status {
    status::invalid(
        &t.name,
        format!(
            "{}'s raw contents are not whole {} elements",
            t.name, t.datatype
        ),
    )
}

fn check_count(t: &InferInputTensor, got: usize) -> Result<(), Status> {
    let want = elements(t)?;
    if got != want {
        return Err(status::invalid(
            &t.name,
            format!(
                "{} has {got} values for shape {:?} ({want})",
                t.name, t.shape
            ),
        ));
    }
    Ok(())
}

/// An output tensor.
pub fn output(
    name: &str,
    datatype: &str,
    shape: Vec<i64>,
    contents: InferTensorContents,
) -> InferOutputTensor {
    InferOutputTensor {
        name: name.to_owned(),
        datatype: datatype.to_owned(),
        shape,
        parameters: Default::default(),
        contents: Some(contents),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(
        datatype: &str,
        shape: Vec<i64>,
        contents: Option<InferTensorContents>,
    ) -> InferInputTensor {
        InferInputTensor {
            name: "x".into(),
            datatype: datatype.into(),
            shape,
            parameters: Default::default(),
            contents,
        }
    }

    #[test]
    fn bytes_from_contents_and_from_raw_agree() {
        let t = tensor(
            "BYTES",
            vec![2],
            Some(InferTensorContents {
                bytes_contents: vec![b"AAPL".to_vec(), b"Q".to_vec()],
                ..Default::default()
            }),
        );
        let typed = bytes(&t, None).ok();
        let mut raw = Vec::new();
        for v in [&b"AAPL"[..], b"Q"] {
            raw.extend((v.len() as u32).to_le_bytes());
            raw.extend(v);
        }
        let t = tensor("BYTES", vec![2], None);
        assert_eq!(bytes(&t, Some(&raw)).ok(), typed);
        assert_eq!(typed, Some(vec![b"AAPL".to_vec(), b"Q".to_vec()]));
        assert!(bytes(&t, Some(&raw[..5])).is_err(), "a cut length prefix");
        assert!(
            bytes(&tensor("BYTES", vec![3], None), Some(&raw)).is_err(),
            "shape says 3"
        );
        assert!(bytes(&tensor("FP32", vec![2], None), Some(&raw)).is_err());
    }

    #[test]
    fn floats_from_every_form() {
        let t = tensor(
            "FP64",
            vec![1, 2],
            Some(InferTensorContents {
                fp64_contents: vec![0.5, -2.0],
                ..Default::default()
            }),
        );
        assert_eq!(floats(&t, None).ok(), Some(vec![0.5, -2.0]));
        let raw: Vec<u8> = [0.5f32, -2.0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        assert_eq!(
            floats(&tensor("FP32", vec![1, 2], None), Some(&raw)).ok(),
            Some(vec![0.5, -2.0])
        );
        assert!(floats(&tensor("FP32", vec![1, 2], None), Some(&raw[..7])).is_err());
        assert!(floats(&tensor("INT32", vec![1, 2], None), None).is_err());
        assert!(
            floats(&tensor("FP32", vec![-1, 2], None), Some(&raw)).is_err(),
            "negative dimension"
        );
    }
}
