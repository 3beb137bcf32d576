//! Task discovery: a component's exports that a job can call, each a
//! [`Task`] with its parameters and result type; exports JSON cannot
//! cross are refused at load.

use super::*;

/// One export of a component that a job can call.
#[derive(Debug, Clone)]
pub struct Task {
    /// The name jobs use: the export's WIT name (`task-one`), or
    /// `interface.function` for a function inside an exported interface.
    pub name: String,
    /// The interface that holds it (`beanbox:showcase/math`), if any.
    pub interface: Option<String>,
    /// Parameter names (WIT kebab-case) and types.
    pub params: Vec<(String, Type)>,
    /// The result type, if the function returns one.
    pub result: Option<Type>,
    pub(super) index: ComponentExportIndex,
}

impl Task {
    /// The WIT signature, e.g. `func(arg1: string) -> string`.
    pub fn signature(&self) -> String {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {}", types::wit_name(t)))
            .collect();
        match &self.result {
            Some(r) => format!("func({}) -> {}", params.join(", "), types::wit_name(r)),
            None => format!("func({})", params.join(", ")),
        }
    }

    /// A JSON Schema of this task's kwargs object.
    pub fn kwargs_schema(&self) -> Value {
        let mut props = Map::new();
        let mut required = Vec::new();
        for (name, ty) in &self.params {
            if !matches!(ty, Type::Option(_)) {
                required.push(Value::from(name.as_str()));
            }
            props.insert(name.clone(), types::json_schema(ty));
        }
        serde_json::json!({
            "type": "object",
            "properties": props,
            "required": required,
            "additionalProperties": false,
        })
    }
}

/// Lists a component's callable exports; refuses any whose signature cannot
/// cross JSON.
pub(super) fn discover_tasks(
    engine: &Engine,
    component: &Component,
    module: &str,
) -> Result<Vec<Task>, LoadError> {
    let mut tasks = Vec::new();
    let ty = component.component_type();
    for (export, item) in ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(func) => {
                let index = component
                    .get_export_index(None, export)
                    .expect("listed export has an index");
                tasks.push(make_task(module, export.to_string(), None, &func, index)?);
            }
            ComponentItem::ComponentInstance(instance) => {
                let iface_index = component
                    .get_export_index(None, export)
                    .expect("listed export has an index");
                let short = export.rsplit('/').next().unwrap_or(export);
                let short = short.split('@').next().unwrap_or(short);
                for (fname, fitem) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = fitem.ty {
                        let index = component
                            .get_export_index(Some(&iface_index), fname)
                            .expect("listed export has an index");
                        tasks.push(make_task(
                            module,
                            format!("{short}.{fname}"),
                            Some(export.to_string()),
                            &func,
                            index,
                        )?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(tasks)
}

fn make_task(
    module: &str,
    name: String,
    interface: Option<String>,
    func: &wasmtime::component::types::ComponentFunc,
    index: ComponentExportIndex,
) -> Result<Task, LoadError> {
    let params: Vec<(String, Type)> = func.params().map(|(n, t)| (n.to_string(), t)).collect();
    let result = func.results().next();
    let refuse = |reason: String| LoadError::Unsupported {
        module: module.to_string(),
        export: name.clone(),
        reason,
    };
    if func.async_() {
        return Err(refuse("async functions are not supported".into()));
    }
    for (pname, ty) in &params {
        if let Some(what) = types::unsupported(ty) {
            return Err(refuse(format!(
                "parameter `{pname}` uses {what}, which JSON cannot carry"
            )));
        }
    }
    if let Some(what) = result.as_ref().and_then(types::unsupported) {
        return Err(refuse(format!(
            "its result uses {what}, which JSON cannot carry"
        )));
    }
    Ok(Task {
        name,
        interface,
        params,
        result,
        index,
    })
}
