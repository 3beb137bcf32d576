//! A task component: the world in `wit/world.wit` declares its exports; the
//! beanbox imports (log, job, queue) come with the SDK.

beanbox_sdk::generate!("my-task");

struct MyTask;

impl Guest for MyTask {
    fn task_one(arg1: String, arg2: String, arg3: String) -> String {
        beanbox_sdk::info!("job {} joining 3 strings", beanbox_sdk::job::info().id);
        arg1 + &arg2 + &arg3
    }
}

export!(MyTask);
