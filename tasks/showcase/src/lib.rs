//! Echo exports for every WIT type (records, variants, enums, flags, options,
//! results, lists, tuples, all the scalars), an export failing with a
//! structured error (`place`), a multi-parameter export and one
//! export inside the exported interface `beanbox:showcase/math`.

// The generated glue for `describe` takes its 4 parameters as 8 core values.
#![allow(clippy::too_many_arguments)]

beanbox_sdk::generate!("showcase");

struct Showcase;

impl Guest for Showcase {
    fn echo_bool(v: bool) -> bool {
        v
    }

    fn echo_u8(v: u8) -> u8 {
        v
    }

    fn echo_u16(v: u16) -> u16 {
        v
    }

    fn echo_u32(v: u32) -> u32 {
        v
    }

    fn echo_u64(v: u64) -> u64 {
        v
    }

    fn echo_s8(v: i8) -> i8 {
        v
    }

    fn echo_s16(v: i16) -> i16 {
        v
    }

    fn echo_s32(v: i32) -> i32 {
        v
    }

    fn echo_s64(v: i64) -> i64 {
        v
    }

    fn echo_f32(v: f32) -> f32 {
        v
    }

    fn echo_f64(v: f64) -> f64 {
        v
    }

    fn echo_char(v: char) -> char {
        v
    }

    fn echo_string(v: String) -> String {
        v
    }

    fn echo_list(v: Vec<u32>) -> Vec<u32> {
        v
    }

    fn echo_tuple(v: (String, u32, bool)) -> (String, u32, bool) {
        v
    }

    fn echo_point(p: Point) -> Point {
        p
    }

    fn echo_shape(v: Shape) -> Shape {
        v
    }

    fn echo_color(v: Color) -> Color {
        v
    }

    fn echo_perms(v: Perms) -> Perms {
        v
    }

    fn echo_option(v: Option<u32>) -> Option<u32> {
        v
    }

    fn echo_result(v: Result<u32, String>) -> Result<u32, String> {
        v
    }

    fn echo_nested(v: Vec<Point>) -> Vec<Point> {
        v
    }

    fn describe(name: String, age: u8, nickname: Option<String>, tags: Vec<String>) -> String {
        format!(
            "name={name};age={age};nickname={};tags={}",
            nickname.unwrap_or_default(),
            tags.join(",")
        )
    }

    fn full_name(first_name: String, last_name: Option<String>) -> String {
        match last_name {
            Some(last) => format!("{first_name} {last}"),
            None => first_name,
        }
    }

    fn place(p: Point) -> Result<Point, PlacementError> {
        let on_grid = |c: i32| (0..10).contains(&c);
        if !(on_grid(p.x) && on_grid(p.y)) {
            Err(PlacementError::OffGrid(p))
        } else if p.label.is_none() {
            Err(PlacementError::Unlabelled)
        } else {
            Ok(p)
        }
    }

    fn sum_bytes(data: Vec<u8>) -> u64 {
        data.iter().map(|&b| u64::from(b)).sum()
    }

    fn noop() {}
}

impl exports::beanbox::showcase::math::Guest for Showcase {
    fn add(a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }
}

export!(Showcase);
