//! Unit conversion: a device may report in another unit than the one its
//! sensor is stored in (°F for a °C sensor, kPa for hPa). Every supported
//! unit is a linear function of its dimension's base unit.

/// A unit as `base = value × factor + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Unit {
    dimension: &'static str,
    factor: f64,
    offset: f64,
}

const fn unit(dimension: &'static str, factor: f64, offset: f64) -> Unit {
    Unit { dimension, factor, offset }
}

/// Names (with common spellings) → unit. Names compare exactly.
const UNITS: &[(&[&str], Unit)] = &[
    (&["degC", "°C", "C", "celsius"], unit("temperature", 1.0, 0.0)),
    (&["degF", "°F", "F", "fahrenheit"], unit("temperature", 5.0 / 9.0, -32.0 * 5.0 / 9.0)),
    (&["K", "kelvin"], unit("temperature", 1.0, -273.15)),
    (&["Pa"], unit("pressure", 1.0, 0.0)),
    (&["hPa", "mbar"], unit("pressure", 100.0, 0.0)),
    (&["kPa"], unit("pressure", 1_000.0, 0.0)),
    (&["bar"], unit("pressure", 100_000.0, 0.0)),
    (&["psi"], unit("pressure", 6_894.757_293_168, 0.0)),
    (&["%RH", "%"], unit("relative humidity", 1.0, 0.0)),
    (&["mm/s"], unit("velocity", 1.0, 0.0)),
    (&["m/s"], unit("velocity", 1_000.0, 0.0)),
    (&["in/s"], unit("velocity", 25.4, 0.0)),
    (&["V"], unit("voltage", 1.0, 0.0)),
    (&["mV"], unit("voltage", 0.001, 0.0)),
    (&["A"], unit("current", 1.0, 0.0)),
    (&["mA"], unit("current", 0.001, 0.0)),
    (&["m"], unit("length", 1.0, 0.0)),
    (&["cm"], unit("length", 0.01, 0.0)),
    (&["mm"], unit("length", 0.001, 0.0)),
    (&["ppm"], unit("concentration", 1.0, 0.0)),
    (&["ppb"], unit("concentration", 0.001, 0.0)),
];

fn lookup(name: &str) -> Option<Unit> {
    UNITS.iter().find(|(names, _)| names.contains(&name)).map(|&(_, unit)| unit)
}

/// A conversion from one unit to another: `to = from × scale + offset`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Conversion {
    pub scale: f64,
    pub offset: f64,
}

impl Conversion {
    pub const IDENTITY: Conversion = Conversion { scale: 1.0, offset: 0.0 };

    pub fn apply(&self, value: f64) -> f64 {
        value * self.scale + self.offset
    }
}

/// How to turn values in `from` into values in `to`; `None` when the units
/// measure different things or one is unknown. Equal names always convert,
/// so sensors in units this table lacks still work unconverted.
pub fn conversion(from: &str, to: &str) -> Option<Conversion> {
    if from == to {
        return Some(Conversion::IDENTITY);
    }
    let (from, to) = (lookup(from)?, lookup(to)?);
    if from.dimension != to.dimension {
        return None;
    }
    // base = v × f1 + o1; result = (base − o2) / f2
    Some(Conversion { scale: from.factor / to.factor, offset: (from.offset - to.offset) / to.factor })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn convert(value: f64, from: &str, to: &str) -> f64 {
        conversion(from, to).unwrap().apply(value)
    }

    #[test]
    fn converts_within_a_dimension() {
        assert!((convert(212.0, "degF", "degC") - 100.0).abs() < 1e-9);
        assert!((convert(0.0, "°C", "degF") - 32.0).abs() < 1e-9);
        assert!((convert(300.0, "K", "degC") - 26.85).abs() < 1e-9);
        assert!((convert(101.325, "kPa", "hPa") - 1013.25).abs() < 1e-9);
        assert!((convert(1.0, "in/s", "mm/s") - 25.4).abs() < 1e-9);
        assert_eq!(convert(42.0, "furlongs", "furlongs"), 42.0);
    }

    #[test]
    fn refuses_across_dimensions_and_unknown_units() {
        assert_eq!(conversion("degC", "hPa"), None);
        assert_eq!(conversion("furlongs", "m"), None);
        assert_eq!(conversion("m", "furlongs"), None);
    }

    #[test]
    fn round_trips() {
        for (names, _) in UNITS {
            for (others, _) in UNITS {
                if let Some(there) = conversion(names[0], others[0]) {
                    let back = conversion(others[0], names[0]).unwrap();
                    assert!(
                        (back.apply(there.apply(12.5)) - 12.5).abs() < 1e-9,
                        "{} ↔ {}",
                        names[0],
                        others[0]
                    );
                }
            }
        }
    }
}
