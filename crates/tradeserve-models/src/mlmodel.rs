//! Reading an `MLmodel` file as MLflow writes it, and checking it against what the service
//! will feed the model.
//!
//! MLflow stores `signature.inputs` / `outputs` as JSON text inside YAML strings. TradeServe
//! models also carry `metadata.tradeserve` with the role, version and the names of the input
//! columns; a model whose columns differ from the feature schema is refused at load time.

use serde::Deserialize;

/// The parts of `MLmodel` the service uses.
#[derive(Debug, Clone, Deserialize)]
pub struct MlModel {
    pub flavors: Flavors,
    pub signature: Option<Signature>,
    #[serde(default)]
    pub metadata: Option<Metadata>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Flavors {
    pub onnx: Option<OnnxFlavor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OnnxFlavor {
    /// File name of the ONNX graph inside the folder.
    pub data: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Signature {
    pub inputs: Option<String>,
    pub outputs: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub tradeserve: Option<TradeserveMetadata>,
}

/// What training records about a TradeServe model.
#[derive(Debug, Clone, Deserialize)]
pub struct TradeserveMetadata {
    pub role: String,
    pub version: String,
    pub input_columns: Vec<String>,
    #[serde(default)]
    pub input_means: Vec<f64>,
    #[serde(default)]
    pub output_classes: Vec<String>,
    #[serde(default)]
    pub model_sha256: Option<String>,
}

/// One tensor of a signature.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TensorSpec {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(rename = "tensor-spec")]
    pub tensor_spec: Option<TensorShape>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TensorShape {
    pub dtype: String,
    pub shape: Vec<i64>,
}

/// What is wrong with an `MLmodel` for a given role.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignatureError {
    #[error("MLmodel is not valid: {0}")]
    Parse(String),
    #[error("MLmodel has no onnx flavor")]
    NotOnnx,
    #[error("MLmodel has no signature {0}")]
    MissingSignature(&'static str),
    #[error(
        "signature {which} must be one float32 tensor named {name:?} of shape [-1, {width}], found {found}"
    )]
    Tensor {
        which: &'static str,
        name: &'static str,
        width: usize,
        found: String,
    },
    #[error("MLmodel has no metadata.tradeserve block (role, version, input_columns)")]
    MissingMetadata,
    #[error("model is for role {found:?}, expected {expected:?}")]
    Role { expected: String, found: String },
    #[error("input columns {found:?} do not match the feature schema {expected:?}")]
    Columns {
        expected: Vec<String>,
        found: Vec<String>,
    },
}

impl MlModel {
    pub fn parse(text: &str) -> Result<MlModel, SignatureError> {
        serde_yaml::from_str(text).map_err(|e| SignatureError::Parse(e.to_string()))
    }

    /// The ONNX file name.
    pub fn onnx_file(&self) -> Result<&str, SignatureError> {
        self.flavors
            .onnx
            .as_ref()
            .map(|f| f.data.as_str())
            .ok_or(SignatureError::NotOnnx)
    }

    /// Check the signature and metadata against the role and its input columns.
    pub fn check(
        &self,
        role: &str,
        columns: &[&str],
    ) -> Result<&TradeserveMetadata, SignatureError> {
        let sig = self
            .signature
            .as_ref()
            .ok_or(SignatureError::MissingSignature("inputs"))?;
        let inputs = sig
            .inputs
            .as_deref()
            .ok_or(SignatureError::MissingSignature("inputs"))?;
        let outputs = sig
            .outputs
            .as_deref()
            .ok_or(SignatureError::MissingSignature("outputs"))?;
        check_tensor(inputs, "inputs", "features", columns.len())?;
        check_tensor(outputs, "outputs", "probabilities", 3)?;
        let meta = self
            .metadata
            .as_ref()
            .and_then(|m| m.tradeserve.as_ref())
            .ok_or(SignatureError::MissingMetadata)?;
        if meta.role != role {
            return Err(SignatureError::Role {
                expected: role.to_owned(),
                found: meta.role.clone(),
            });
        }
        if meta
            .input_columns
            .iter()
            .map(String::as_str)
            .ne(columns.iter().copied())
        {
            return Err(SignatureError::Columns {
                expected: columns.iter().map(|c| (*c).to_owned()).collect(),
                found: meta.input_columns.clone(),
            });
        }
        Ok(meta)
    }
}

fn check_tensor(
    json: &str,
    which: &'static str,
    name: &'static str,
    width: usize,
) -> Result<(), SignatureError> {
    let specs: Vec<TensorSpec> = serde_json::from_str(json)
        .map_err(|e| SignatureError::Parse(format!("signature {which}: {e}")))?;
    let ok = match specs.as_slice() {
        [spec] => {
            spec.kind == "tensor"
                && spec.name.as_deref() == Some(name)
                && spec.tensor_spec.as_ref().is_some_and(|t| {
                    t.dtype == "float32"
                        && t.shape.len() == 2
                        && t.shape[0] == -1
                        && t.shape[1] == width as i64
                })
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(SignatureError::Tensor {
            which,
            name,
            width,
            found: json.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"artifact_path: model
flavors:
  onnx:
    code: null
    data: model.onnx
metadata:
  tradeserve: {"role": "bull_specialist", "version": "1", "input_columns": ["a", "b"]}
signature:
  inputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}, "name": "features"}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 3]}, "name": "probabilities"}]'
  params: null
"#;

    #[test]
    fn accepts_a_matching_model() {
        let m = MlModel::parse(GOOD).unwrap();
        assert_eq!(m.onnx_file().unwrap(), "model.onnx");
        let meta = m.check("bull_specialist", &["a", "b"]).unwrap();
        assert_eq!(meta.version, "1");
    }

    #[test]
    fn refuses_mismatches() {
        let m = MlModel::parse(GOOD).unwrap();
        assert!(matches!(
            m.check("bear_specialist", &["a", "b"]),
            Err(SignatureError::Role { .. })
        ));
        assert!(matches!(
            m.check("bull_specialist", &["a", "c"]),
            Err(SignatureError::Columns { .. })
        ));
        assert!(matches!(
            m.check("bull_specialist", &["a", "b", "c"]),
            Err(SignatureError::Tensor {
                which: "inputs",
                ..
            })
        ));
        let wide = GOOD.replace("[-1, 3]", "[-1, 4]");
        assert!(matches!(
            MlModel::parse(&wide)
                .unwrap()
                .check("bull_specialist", &["a", "b"]),
            Err(SignatureError::Tensor {
                which: "outputs",
                ..
            })
        ));
        let f64_input = GOOD.replacen("float32", "float64", 1);
        assert!(
            MlModel::parse(&f64_input)
                .unwrap()
                .check("bull_specialist", &["a", "b"])
                .is_err()
        );
        let no_meta = GOOD.replace("  tradeserve:", "  other:");
        assert_eq!(
            MlModel::parse(&no_meta)
                .unwrap()
                .check("bull_specialist", &["a", "b"])
                .unwrap_err(),
            SignatureError::MissingMetadata
        );
        assert!(matches!(
            MlModel::parse("flavors: [1"),
            Err(SignatureError::Parse(_))
        ));
    }
}
