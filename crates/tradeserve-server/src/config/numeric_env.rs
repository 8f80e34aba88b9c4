//! The environment as configuration, with numbers in exponent notation read as numbers.
//! figment reads a variable as a float only when it has a decimal point: `1.5e6` is a number,
//! `1e12` a string, which a numeric setting then refuses
//! (`TRADESERVE_RISK__MAX_POSITION_NOTIONAL=1e12` stopped the start while `1000000000000`
//! worked). A value made only of digits, an optional sign and one exponent is a number here.

use figment::providers::Env;
use figment::value::{Dict, Map, Num, Value};
use figment::{Metadata, Profile, Provider};

/// [`Env`], with exponent-notation numbers as numbers (see the module docs).
pub struct NumericEnv(pub Env);

impl Provider for NumericEnv {
    fn metadata(&self) -> Metadata {
        self.0.metadata()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.0.data()?;
        for dict in data.values_mut() {
            dict.values_mut().for_each(as_number);
        }
        Ok(data)
    }
}

fn as_number(value: &mut Value) {
    match value {
        Value::String(tag, text) => {
            if let Some(number) = exponent_number(text) {
                *value = Value::Num(*tag, Num::F64(number));
            }
        }
        Value::Dict(_, dict) => dict.values_mut().for_each(as_number),
        Value::Array(_, items) => items.iter_mut().for_each(as_number),
        _ => {}
    }
}

/// `1e12`, `-2E-3`, `+5e+4`: digits and one exponent, no decimal point (figment's case).
fn exponent_number(text: &str) -> Option<f64> {
    let (mantissa, exponent) = text.split_once(['e', 'E'])?;
    let digits = |s: &str| {
        let s = s.strip_prefix(['+', '-']).unwrap_or(s);
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
    };
    (digits(mantissa) && digits(exponent))
        .then(|| text.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponent_notation_without_a_point_is_a_number_and_nothing_else_is() {
        assert_eq!(exponent_number("1e12"), Some(1e12));
        assert_eq!(exponent_number("-2E-3"), Some(-2e-3));
        assert_eq!(exponent_number("+5e+4"), Some(5e4));
        for not in [
            "e5",
            "1e",
            "1e1e1",
            "abc",
            "1.5e6",
            "12",
            "1e5x",
            "redis://h:1e3",
            "",
        ] {
            assert_eq!(exponent_number(not), None, "{not}");
        }
    }
}
